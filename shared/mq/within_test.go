package mq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

func TestPublishGrantWithin(t *testing.T) {
	refused := errors.New("refused")
	cases := []struct {
		name      string
		publish   func(context.Context, domain.Claim) error
		want      error
		retryable bool
	}{
		// An instant answer also cancels the deadline's context as it returns, so both may be ready when
		// the wait begins; the answer must win. (The race needs the publish to finish before the caller
		// waits, which these runs make likely but cannot force: the timer's test hit it in make test.)
		{"instant success", func(context.Context, domain.Claim) error { return nil }, nil, false},
		{"instant error", func(context.Context, domain.Claim) error { return refused }, refused, false},
		{"no answer in time", func(ctx context.Context, _ domain.Claim) error { time.Sleep(200 * time.Millisecond); return nil }, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runs := 300
			if c.retryable {
				runs = 1
			}
			for i := range runs {
				err := PublishGrantWithin(context.Background(), c.publish, domain.Claim{ID: "clm_1"}, 20*time.Millisecond)
				if c.retryable {
					if err == nil || !fault.IsRetryable(err) {
						t.Fatalf("got %v, want a retryable timeout", err)
					}
					continue
				}
				if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
					t.Fatalf("run %d: got %v, want %v", i, err, c.want)
				}
			}
		})
	}
}
