// Package ledger writes grants to MySQL: the durable record of every unit issued. A batch is one
// transaction keyed by claim id, so a redelivered or overlapping batch records nothing twice. A grant
// that cannot be decoded or can never be written (its campaign or user is unknown to MySQL) is
// recorded as a sync failure and acknowledged, so it never holds back the good grants of its batch.
package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/aliyun/fc-runtime-go-sdk/fccontext"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Store records claims.
type Store interface {
	RecordClaims(ctx context.Context, claims []domain.Claim) (mysqlstore.RecordResult, error)
	RecordSyncFailure(ctx context.Context, f mysqlstore.SyncFailure) error
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

// Record writes one batch of messages.
func (l *Ledger) Record(ctx context.Context, msgs []mqhandler.Message) (Result, error) {
	res := Result{Received: len(msgs)}
	claims := make([]domain.Claim, 0, len(msgs))
	for _, m := range msgs {
		c, err := mq.DecodeGrant(m.Body)
		if err != nil {
			obs.Logger(ctx).Error("poison grant recorded and acknowledged", "message_id", m.ID, "error", err.Error())
			if recErr := l.store.RecordSyncFailure(ctx, mysqlstore.SyncFailure{
				Entity: "grant", EntityID: m.ID, Reason: err.Error(), Payload: string(m.Body),
			}); recErr != nil {
				return res, fault.Retryable(fmt.Errorf("recording poison grant %s: %w", m.ID, recErr))
			}
			res.Poison++
			continue
		}
		claims = append(claims, c)
	}
	if len(claims) == 0 {
		return res, nil
	}
	rr, err := l.store.RecordClaims(ctx, claims)
	if err != nil && !fault.IsRetryable(err) {
		// One grant MySQL will never take fails the whole transaction: write the batch one grant at a
		// time to find it, so the rest is recorded now rather than retried into the dead-letter queue.
		return l.isolate(ctx, msgs, claims, res)
	}
	if err != nil {
		return res, err
	}
	res.Inserted, res.Duplicates = rr.Inserted, rr.Duplicates
	obs.Logger(ctx).Info("grants recorded", "received", res.Received, "inserted", res.Inserted, "duplicates", res.Duplicates, "poison", res.Poison)
	return res, nil
}

func (l *Ledger) isolate(ctx context.Context, msgs []mqhandler.Message, claims []domain.Claim, res Result) (Result, error) {
	for _, c := range claims {
		rr, err := l.store.RecordClaims(ctx, []domain.Claim{c})
		if err == nil {
			res.Inserted += rr.Inserted
			res.Duplicates += rr.Duplicates
			continue
		}
		if fault.IsRetryable(err) {
			return res, err
		}
		payload, _ := json.Marshal(c)
		obs.Logger(ctx).Error("grant MySQL cannot take recorded and acknowledged", "claim_id", c.ID, "error", err.Error())
		if recErr := l.store.RecordSyncFailure(ctx, mysqlstore.SyncFailure{
			Entity: "grant", EntityID: c.ID, Reason: err.Error(), Payload: string(payload),
		}); recErr != nil {
			return res, fault.Retryable(fmt.Errorf("recording unwritable grant %s: %w", c.ID, recErr))
		}
		res.Poison++
	}
	obs.Logger(ctx).Info("grants recorded one by one", "received", res.Received, "inserted", res.Inserted, "duplicates", res.Duplicates, "poison", res.Poison)
	return res, nil
}

// Invocation is the FC event function: a batch of CloudEvents in, a Result out.
func (l *Ledger) Invocation(log *slog.Logger) func(context.Context, json.RawMessage) (Result, error) {
	return func(ctx context.Context, payload json.RawMessage) (Result, error) {
		requestID := ""
		if fcCtx, ok := fccontext.FromContext(ctx); ok {
			requestID = fcCtx.RequestID
		}
		ctx = obs.WithRequest(ctx, log, requestID)
		msgs, err := mqhandler.Messages(payload)
		if err != nil {
			obs.Logger(ctx).Error("payload is not a RocketMQ event", "error", err.Error())
			return Result{}, err
		}
		return l.Record(ctx, msgs)
	}
}
