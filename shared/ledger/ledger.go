// Package ledger writes grants to MySQL: the durable record of every unit issued. A batch is one
// transaction keyed by claim id, so a redelivered or overlapping batch records nothing twice. A grant
// that cannot be decoded or can never be written (its campaign or user is unknown to MySQL), or that
// makes the code panic, is recorded as a sync failure and acknowledged, so it never holds back the good
// grants of its batch.
package ledger

import (
	"context"
	"log/slog"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Store records claims.
type Store interface {
	RecordClaims(ctx context.Context, claims []domain.Claim) (domain.RecordResult, error)
	RecordSyncFailure(ctx context.Context, f domain.SyncFailure) error
}

// Ledger handles grant batches.
type Ledger struct{ store Store }

func New(store Store) *Ledger { return &Ledger{store: store} }

// Result is what the function returns for a batch.
type Result struct {
	Received   int `json:"received"`
	Inserted   int `json:"inserted"`
	Duplicates int `json:"duplicates"`
	Poison     int `json:"poison"`
}

// Record writes one batch of messages: the whole batch in one transaction when it can, each message
// on its own when the batch fails permanently (a grant that does not decode, one MySQL will never take,
// a panic), so the one at fault is recorded and acknowledged and the rest are written now. Both paths
// go through shared/mqhandler's recoverer and poison recorder, as cachesync does.
func (l *Ledger) Record(ctx context.Context, msgs []mqhandler.Message) (Result, error) {
	res := Result{Received: len(msgs)}
	write := func(ctx context.Context, msgs []mqhandler.Message) error {
		claims := make([]domain.Claim, len(msgs))
		for i, m := range msgs {
			c, err := mq.DecodeGrant(m.Body)
			if err != nil {
				return fault.Permanent(err)
			}
			claims[i] = c
		}
		rr, err := l.store.RecordClaims(ctx, claims)
		if err != nil {
			return err
		}
		res.Inserted += rr.Inserted
		res.Duplicates += rr.Duplicates
		return nil
	}
	poison := func(ctx context.Context, m mqhandler.Message, cause error) error {
		if err := l.recordPoison(ctx, m, cause); err != nil {
			return err
		}
		res.Poison++
		return nil
	}
	one := mqhandler.Chain(func(ctx context.Context, m mqhandler.Message) error {
		return write(ctx, []mqhandler.Message{m})
	}, mqhandler.Poison(poison), mqhandler.Recoverer())
	batch := mqhandler.ChainBatch(write, mqhandler.Isolate(one), mqhandler.RecoverBatch())
	if err := batch(ctx, msgs); err != nil {
		return res, err
	}
	obs.Logger(ctx).Info("grants recorded", "received", res.Received, "inserted", res.Inserted, "duplicates", res.Duplicates, "poison", res.Poison)
	return res, nil
}

// recordPoison parks a grant in sync_failures under its claim id when it has one, under the message
// id when it does not even decode.
func (l *Ledger) recordPoison(ctx context.Context, m mqhandler.Message, cause error) error {
	id := m.ID
	if c, err := mq.DecodeGrant(m.Body); err == nil {
		id = c.ID
	}
	return l.store.RecordSyncFailure(ctx, domain.SyncFailure{
		Entity: "grant", EntityID: id, Reason: cause.Error(), Payload: string(m.Body),
	})
}

// Invocation is the FC event function: a batch of CloudEvents in, a Result out.
func (l *Ledger) Invocation(log *slog.Logger) func(context.Context, []byte) (Result, error) {
	return mqhandler.Serve(log, l.Record)
}
