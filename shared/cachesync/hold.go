package cachesync

import (
	"context"
	"errors"
	"time"

	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Hold keeps a change whose apply failed because Redis cannot be reached inside this invocation,
// probing Redis every Every, and applies it again as soon as a probe is answered. Given back instead,
// it would wait out the trigger's backoff, which has doubled to 16 s by the end of a 30 s outage, so
// the cache would lag MySQL for that long after the link returns; held, it lags by one probe interval.
// A probe is one PING from the one instance the trigger runs (concurrency 1), which is no load on a
// Redis coming back. A failure while Redis answers (a replica behind the event, a slot being rebuilt)
// is not held: it goes back to the trigger at once, as before.
type Hold struct {
	Probe func(ctx context.Context) error // nil: never hold
	Every time.Duration
	// Max bounds the hold; it also stops Margin before the invocation's deadline, so the function
	// answers (and the trigger redelivers) rather than being killed.
	Max    time.Duration
	Margin time.Duration
}

func (hd Hold) Middleware() mqhandler.Middleware {
	return func(h mqhandler.Handler) mqhandler.Handler {
		if hd.Probe == nil || hd.Every <= 0 {
			return h
		}
		return func(ctx context.Context, msg mqhandler.Message) error {
			until := time.Now().Add(hd.Max)
			if d, ok := ctx.Deadline(); ok && d.Add(-hd.Margin).Before(until) {
				until = d.Add(-hd.Margin)
			}
			for {
				err := h(ctx, msg)
				if err == nil || !fault.IsRetryable(err) || hd.reachable(ctx) {
					return err
				}
				obs.Logger(ctx).Warn("redis unreachable: holding the change until it answers", "message_id", msg.ID, "error", err.Error())
				for {
					if time.Now().Add(hd.Every).After(until) {
						return err
					}
					select {
					case <-ctx.Done():
						return fault.Retryable(errors.Join(err, ctx.Err()))
					case <-time.After(hd.Every):
					}
					if hd.reachable(ctx) {
						break
					}
				}
			}
		}
	}
}

func (hd Hold) reachable(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, hd.Every)
	defer cancel()
	return hd.Probe(pctx) == nil
}
