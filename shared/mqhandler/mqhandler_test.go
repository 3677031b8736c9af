package mqhandler

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/fc"

	"github.com/benefit-issuance/benefits/shared/fault"
)

func TestMessagesFromFixtures(t *testing.T) {
	raw, err := os.ReadFile("../fcevents/testdata/rocketmq-event-batch.json")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := Messages(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Tag != "campaign" || msgs[1].Tag != "user" || string(msgs[1].Body) != `{"entity":"user","id":"u1","version":2}` ||
		len(msgs[0].Keys) != 1 || msgs[0].Keys[0] != "campaign:cmp_1" {
		t.Fatalf("messages: %+v", msgs)
	}
}

func TestMiddlewareOutcomes(t *testing.T) {
	transient := fault.Retryable(errors.New("timeout"))
	cases := []struct {
		name         string
		failures     []error // returned by successive calls; nil after the list
		recordFails  bool
		wantErr      bool
		wantRetry    bool
		wantRecorded int
		wantCalls    int
	}{
		{"success", nil, false, false, false, 0, 1},
		{"blip healed by in-process retry", []error{transient}, false, false, false, 0, 2},
		{"persistent transient goes back to the broker", []error{transient, transient, transient, transient}, false, true, true, 0, 3},
		{"permanent is recorded and acknowledged", []error{errors.New("row is gone")}, false, false, false, 1, 1},
		{"panic is recorded and acknowledged", []error{errPanic}, false, false, false, 1, 1},
		{"recording failure becomes retryable", []error{errors.New("bad")}, true, true, true, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, recorded := 0, 0
			h := func(ctx context.Context, msg Message) error {
				calls++
				if calls-1 < len(tc.failures) {
					if tc.failures[calls-1] == errPanic {
						panic("nil map")
					}
					return tc.failures[calls-1]
				}
				return nil
			}
			record := func(ctx context.Context, msg Message, cause error) error {
				recorded++
				if tc.recordFails {
					return errors.New("db down")
				}
				return nil
			}
			chain := Chain(h, Poison(record), Retry{MaxRetries: 2, InitialInterval: time.Millisecond}.Middleware(), Recoverer())
			err := chain(context.Background(), Message{ID: "m1"})
			if (err != nil) != tc.wantErr || (err != nil && fault.IsRetryable(err) != tc.wantRetry) {
				t.Fatalf("err = %v", err)
			}
			if recorded != tc.wantRecorded || calls != tc.wantCalls {
				t.Fatalf("recorded %d calls %d, want %d and %d", recorded, calls, tc.wantRecorded, tc.wantCalls)
			}
		})
	}
}

var errPanic = errors.New("panic marker")

func TestInvocationStopsAtFirstRetryableFailure(t *testing.T) {
	raw, _ := os.ReadFile("../fcevents/testdata/rocketmq-event-batch.json")
	var seen []string
	h := func(ctx context.Context, msg Message) error {
		seen = append(seen, msg.Tag)
		if msg.Tag == "campaign" {
			return fault.Retryable(errors.New("redis reset"))
		}
		return nil
	}
	res, err := Invocation(h, slog.Default())(context.Background(), raw)
	if err == nil || res.Processed != 0 || len(seen) != 1 {
		t.Fatalf("res %+v err %v seen %v", res, err, seen)
	}
	if _, err := Invocation(h, slog.Default())(context.Background(), []byte(`{"not":`)); err == nil {
		t.Fatal("a garbage payload must fail the invocation")
	}
}

func TestRecovererKeepsTheStack(t *testing.T) {
	var recorded error
	h := Chain(func(ctx context.Context, msg Message) error { panicHere(); return nil },
		Poison(func(ctx context.Context, msg Message, cause error) error { recorded = cause; return nil }), Recoverer())
	if err := h(context.Background(), Message{ID: "m1"}); err != nil {
		t.Fatalf("a recorded panic must be acknowledged: %v", err)
	}
	var pe *PanicError
	if !errors.As(recorded, &pe) || pe.Value != "boom" {
		t.Fatalf("recorded %v, want a PanicError", recorded)
	}
	if msg := recorded.Error(); !strings.Contains(msg, "panicHere") || !strings.Contains(msg, "mqhandler_test.go") {
		t.Fatalf("the recorded text lacks the panicking frame: %q", msg)
	}
}

func panicHere() { panic("boom") }

func TestBatchIsolatesWhatFailsPermanently(t *testing.T) {
	transient := fault.Retryable(errors.New("reset"))
	cases := []struct {
		name         string
		batchErr     error // nil: the batch succeeds; errPanic: it panics
		bad          string
		oneErr       error // what the bad message returns alone; errPanic: it panics
		wantErr      bool
		wantRetry    bool
		wantDone     []string
		wantRecorded []string
	}{
		{"whole batch succeeds", nil, "", nil, false, false, []string{"a", "b", "c"}, nil},
		{"retryable batch failure is redelivered whole", transient, "", nil, true, true, nil, nil},
		{"permanent failure isolates the poison", errors.New("fk"), "b", errors.New("fk"), false, false, []string{"a", "c"}, []string{"b"}},
		{"panic isolates the poison", errPanic, "b", errPanic, false, false, []string{"a", "c"}, []string{"b"}},
		{"retryable failure of one message fails the call", errPanic, "b", transient, true, true, []string{"a"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var done, recorded []string
			whole := func(ctx context.Context, msgs []Message) error {
				if tc.batchErr == errPanic {
					panic("nil map")
				}
				if tc.batchErr != nil {
					return tc.batchErr
				}
				for _, m := range msgs {
					done = append(done, m.ID)
				}
				return nil
			}
			one := Chain(func(ctx context.Context, m Message) error {
				if m.ID == tc.bad {
					if tc.oneErr == errPanic {
						panic("nil map")
					}
					return tc.oneErr
				}
				done = append(done, m.ID)
				return nil
			}, Poison(func(ctx context.Context, m Message, cause error) error {
				recorded = append(recorded, m.ID)
				return nil
			}), Recoverer())
			err := ChainBatch(whole, Isolate(one), RecoverBatch())(context.Background(), []Message{{ID: "a"}, {ID: "b"}, {ID: "c"}})
			if (err != nil) != tc.wantErr || (err != nil && fault.IsRetryable(err) != tc.wantRetry) {
				t.Fatalf("err = %v", err)
			}
			if strings.Join(done, ",") != strings.Join(tc.wantDone, ",") || strings.Join(recorded, ",") != strings.Join(tc.wantRecorded, ",") {
				t.Fatalf("done %v recorded %v, want %v and %v", done, recorded, tc.wantDone, tc.wantRecorded)
			}
		})
	}
}

func TestRetryWaitDoublesCapsAndJitters(t *testing.T) {
	base := Retry{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second}
	jittered := base
	jittered.Jitter = 0.2
	cases := []struct {
		r       Retry
		attempt int
		random  float64
		want    time.Duration
	}{
		{base, 0, 0.9, 100 * time.Millisecond},
		{base, 1, 0.9, 200 * time.Millisecond},
		{base, 3, 0.9, 800 * time.Millisecond},
		{base, 4, 0.9, time.Second},
		{base, 60, 0.9, time.Second}, // no overflow however many attempts
		{jittered, 0, 0, 80 * time.Millisecond},
		{jittered, 0, 0.5, 100 * time.Millisecond},
		{jittered, 0, 0.999, 119_960_000 * time.Nanosecond},
		{jittered, 5, 0, 800 * time.Millisecond},
		{Retry{InitialInterval: time.Millisecond, Jitter: 7}, 0, 0, 0}, // jitter above 1 counts as 1
	}
	for _, tc := range cases {
		if got := tc.r.Wait(tc.attempt, tc.random); got != tc.want {
			t.Errorf("%+v Wait(%d, %v) = %v, want %v", tc.r, tc.attempt, tc.random, got, tc.want)
		}
	}
}

func TestRetryStopsAtMaxElapsed(t *testing.T) {
	calls := 0
	h := Retry{MaxRetries: 100, InitialInterval: 20 * time.Millisecond, MaxElapsed: 50 * time.Millisecond, Rand: func() float64 { return 0.5 }}.Middleware()(
		func(ctx context.Context, msg Message) error { calls++; return fault.Retryable(errors.New("reset")) })
	start := time.Now()
	err := h(context.Background(), Message{ID: "m"})
	if !fault.IsRetryable(err) || calls != 2 || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("err %v after %d calls in %v; want the retryable error after 2 calls (20 ms, then 40 ms would pass 50 ms)", err, calls, time.Since(start))
	}
}

// Through the FC runtime SDK's own handler adapter, as fc.Start runs it: the batch reaches Serve as FC
// sent it (a []byte argument is passed through, not unmarshalled first), and a payload that is not
// JSON still fails the invocation.
func TestInvocationThroughTheRuntimeSDK(t *testing.T) {
	raw, err := os.ReadFile("../fcevents/testdata/rocketmq-event-batch.json")
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	h := fc.NewHandler(Invocation(func(ctx context.Context, msg Message) error {
		tags = append(tags, msg.Tag)
		return nil
	}, slog.Default()))
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string // the SDK's answer, or "" for an error
	}{
		{"batch", raw, `{"processed":2}`},
		{"not JSON", []byte(`{"not":`), ""},
		{"not an event", []byte(`42`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := h.Invoke(context.Background(), tc.payload)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("answered %s, want an error", out)
				}
				return
			}
			if err != nil || string(out) != tc.want {
				t.Fatalf("answered %s, %v; want %s", out, err, tc.want)
			}
		})
	}
	if strings.Join(tags, ",") != "campaign,user" {
		t.Fatalf("handled %v, want the batch's two messages", tags)
	}
}
