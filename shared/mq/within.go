package mq

import (
	"context"
	"fmt"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

// PublishGrantWithin calls publish for c and waits at most d for it, even if the client overstays its
// context (the RocketMQ client's own send retries were seen to take 5 s on a 3 s context). A send still
// running after that may yet land: a duplicate, which the ledger ignores. An answer that arrives with
// the deadline is the answer, not a timeout.
func PublishGrantWithin(ctx context.Context, publish func(context.Context, domain.Claim) error, c domain.Claim, d time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, d)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- publish(pctx, c)
	}()
	select {
	case err := <-done:
		return err
	case <-pctx.Done():
		// The publish's own return cancels pctx right after it answers: both may be ready at once.
		select {
		case err := <-done:
			return err
		default:
		}
		return fault.Retryable(fmt.Errorf("publishing grant %s: no answer within %s", c.ID, d))
	}
}
