package cachesync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
)

func TestHoldKeepsAChangeOnlyWhileRedisIsUnreachable(t *testing.T) {
	linkDown := fault.Retryable(errors.New("dial tcp: connection refused"))
	cases := []struct {
		name        string
		results     []error // the handler's answers, in turn (the last repeats)
		probeFails  int     // probes that fail before one is answered (-1: all fail)
		wantErr     error
		wantCalls   int
		wantProbes0 bool // whether no probe at all is wanted
	}{
		{name: "applied at once", results: []error{nil}, wantCalls: 1, wantProbes0: true},
		{name: "permanent failure is not held", results: []error{fault.Permanent(errors.New("row gone"))}, wantErr: errAny, wantCalls: 1, wantProbes0: true},
		{name: "retryable while Redis answers goes back at once", results: []error{linkDown}, probeFails: 0, wantErr: linkDown, wantCalls: 1},
		{name: "held until Redis answers, then applied", results: []error{linkDown, nil}, probeFails: 4, wantCalls: 2},
		{name: "held twice when the first retry meets the link down again", results: []error{linkDown, linkDown, nil}, probeFails: 2, wantCalls: 3},
		{name: "given back after the hold's bound", results: []error{linkDown}, probeFails: -1, wantErr: linkDown, wantCalls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, probes, failed := 0, 0, 0
			h := func(ctx context.Context, m mqhandler.Message) error {
				err := tc.results[min(calls, len(tc.results)-1)]
				calls++
				if err != nil {
					failed = 0 // each failed apply starts a fresh outage for the probe
				}
				return err
			}
			probe := func(ctx context.Context) error {
				probes++
				if tc.probeFails < 0 || failed < tc.probeFails {
					failed++
					// The probe right after a failure finds the link down once more than it counts.
					return errors.New("down")
				}
				return nil
			}
			hold := Hold{Probe: probe, Every: time.Millisecond, Max: 50 * time.Millisecond}
			err := hold.Middleware()(h)(context.Background(), mqhandler.Message{ID: "m"})
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err %v, want nil", err)
			case tc.wantErr == errAny && err == nil:
				t.Fatal("err nil, want the failure")
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr) && err != tc.wantErr:
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if calls != tc.wantCalls {
				t.Fatalf("%d applies, want %d", calls, tc.wantCalls)
			}
			if tc.wantProbes0 != (probes == 0) {
				t.Fatalf("%d probes", probes)
			}
		})
	}
}

var errAny = errors.New("any error")

// A hold never outlives the invocation: it stops its margin before the deadline.
func TestHoldStopsBeforeTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	probes := 0
	hold := Hold{Probe: func(context.Context) error { probes++; return errors.New("down") }, Every: time.Millisecond, Max: 24 * time.Hour, Margin: time.Hour - 20*time.Millisecond}
	err := hold.Middleware()(func(context.Context, mqhandler.Message) error { return fault.Retryable(errors.New("down")) })(ctx, mqhandler.Message{})
	if err == nil || !fault.IsRetryable(err) {
		t.Fatalf("err %v, want the retryable failure", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the hold ran into the invocation's deadline")
	}
	if probes == 0 {
		t.Fatal("never probed")
	}
}
