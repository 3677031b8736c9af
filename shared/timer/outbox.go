// The outbox relay: rule changes committed in MySQL whose publish never happened.

package timer

import (
	"context"
	"errors"

	"github.com/benefit-issuance/benefits/shared/mq"
)

// OutboxRelay publishes committed changes whose publish never happened (a crash between commit and
// send, or a broker outage), then marks them sent.
func (j *Jobs) OutboxRelay(ctx context.Context) (Report, error) {
	var r Report
	entries, err := j.store.PendingOutbox(ctx, j.cfg.OutboxAge, 500)
	if err != nil {
		return r, err
	}
	var sent []int64
	var errs []error
	for _, e := range entries {
		if err := j.pub.PublishChange(ctx, mq.ChangeEvent{Entity: e.Entity, ID: e.EntityID, Version: e.Version}); err != nil {
			r.Failed++
			errs = append(errs, err)
			continue
		}
		sent = append(sent, e.ID)
	}
	if len(sent) > 0 {
		if err := j.store.MarkOutboxSent(ctx, sent...); err != nil {
			errs = append(errs, err)
		}
	}
	r.Published = len(sent)
	return r, errors.Join(errs...)
}
