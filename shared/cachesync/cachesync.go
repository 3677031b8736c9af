// Package cachesync applies rule changes to Redis. A change event names a row; the row is read from
// MySQL and applied behind the cache's version fence, so duplicates, reordering and replays are
// harmless. Transient failures go back to RocketMQ for redelivery; a change that can never apply (the
// row is gone, the event is malformed) is recorded in sync_failures and acknowledged.
package cachesync

import (
	"context"
	"fmt"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Store reads the rows changes name and records what could not be applied.
type Store interface {
	Campaign(ctx context.Context, id string) (domain.CampaignRecord, error)
	User(ctx context.Context, id string) (domain.UserRecord, error)
	ExistingClaims(ctx context.Context, ids []string) (map[string]bool, error)
	RecordSyncFailure(ctx context.Context, f domain.SyncFailure) error
}

// Cache applies rows behind the version fence.
type Cache interface {
	ApplyCampaign(ctx context.Context, c domain.Campaign, dbIssued int64) (domain.ApplyResult, error)
	ApplyUser(ctx context.Context, u domain.UserState) (domain.ApplyResult, error)
	User(ctx context.Context, id string) (domain.CachedUser, error)
	DebitEntries(ctx context.Context, userID string) (map[string]int64, error)
}

// Syncer handles change events.
type Syncer struct {
	store Store
	cache Cache
	hold  Hold
}

func New(store Store, cache Cache) *Syncer { return &Syncer{store: store, cache: cache} }

// Handle applies one change message.
func (s *Syncer) Handle(ctx context.Context, msg mqhandler.Message) error {
	ev, err := mq.DecodeChange(msg.Body)
	if err != nil {
		return fault.Permanent(err)
	}
	return s.Apply(ctx, ev)
}

// Apply brings the cache up to the row a decoded change event names.
func (s *Syncer) Apply(ctx context.Context, ev mq.ChangeEvent) error {
	switch ev.Entity {
	case mq.EntityCampaign:
		return s.campaign(ctx, ev)
	case mq.EntityUser:
		return s.user(ctx, ev)
	}
	return fault.Permanent(fmt.Errorf("unknown entity %q", ev.Entity))
}

// notFound turns "the row is gone" into a permanent failure; everything else keeps its class.
func notFound(err error, code domain.Code) error {
	if domain.CodeOf(err) == code {
		return fault.Permanent(err)
	}
	return err
}

func (s *Syncer) campaign(ctx context.Context, ev mq.ChangeEvent) error {
	rec, err := s.store.Campaign(ctx, ev.ID)
	if err != nil {
		return notFound(err, domain.CodeCampaignNotFound)
	}
	if rec.Campaign.Version < ev.Version {
		// Only a lagging replica shows a row older than the event that announced it; wait for it.
		return fault.Retryable(fmt.Errorf("campaign %s: row at version %d, event at %d", ev.ID, rec.Campaign.Version, ev.Version))
	}
	res, err := s.cache.ApplyCampaign(ctx, rec.Campaign, rec.Issued)
	if err != nil {
		return err
	}
	if res.NotReady() {
		// The campaign's slot lost its data: only the rebuild may write it. Redelivered with backoff,
		// the change lands after the rebuild, so a row the rebuild read just before it is not missed.
		return fault.Retryable(fmt.Errorf("campaign %s: its cache slot is being rebuilt", ev.ID))
	}
	obs.Logger(ctx).Info("campaign synced", "campaign_id", ev.ID, "event_version", ev.Version,
		"row_version", rec.Campaign.Version, "applied", res.Applied, "cached_version", res.CachedVersion)
	return nil
}

func (s *Syncer) user(ctx context.Context, ev mq.ChangeEvent) error {
	rec, err := s.store.User(ctx, ev.ID)
	if err != nil {
		return notFound(err, domain.CodeUserNotFound)
	}
	if rec.User.Version < ev.Version {
		return fault.Retryable(fmt.Errorf("user %s: row at version %d, event at %d", ev.ID, rec.User.Version, ev.Version))
	}
	rec, inFlight, err := s.debitsInFlight(ctx, rec)
	if err != nil {
		return err
	}
	res, err := s.cache.ApplyUser(ctx, domain.UserState{
		ID: rec.User.ID, RegisteredAt: rec.User.RegisteredAt, Member: rec.User.Member,
		Credits: rec.Credited, Debits: rec.Debited + inFlight, Version: rec.User.Version,
	})
	if err != nil {
		return err
	}
	if res.NotReady() {
		return fault.Retryable(fmt.Errorf("user %s: its cache slot is being rebuilt", ev.ID))
	}
	obs.Logger(ctx).Info("user synced", "user_id", ev.ID, "event_version", ev.Version,
		"row_version", rec.User.Version, "applied", res.Applied)
	return nil
}

// debitsInFlight matters only when the cache has no entry for the user but still holds debits it
// made (the entry was evicted): MySQL's debited total lags the ledger, so the debits it lacks are
// added, or the same points could be spent twice. The row is read again after the check, so a debit
// the ledger records meanwhile is counted twice (a lower balance for a moment), never not at all.
func (s *Syncer) debitsInFlight(ctx context.Context, rec domain.UserRecord) (domain.UserRecord, int64, error) {
	cu, err := s.cache.User(ctx, rec.User.ID)
	if err != nil || cu.Present {
		return rec, 0, err
	}
	entries, err := s.cache.DebitEntries(ctx, rec.User.ID)
	if err != nil || len(entries) == 0 {
		return rec, 0, err
	}
	ids := make([]string, 0, len(entries))
	for id := range entries {
		ids = append(ids, id)
	}
	// A debit is recorded in the same transaction as its claim, so a recorded claim is a recorded debit.
	recorded, err := s.store.ExistingClaims(ctx, ids)
	if err != nil {
		return rec, 0, err
	}
	var missing int64
	for id, points := range entries {
		if !recorded[id] {
			missing += points
		}
	}
	fresh, err := s.store.User(ctx, rec.User.ID)
	if err != nil {
		return rec, 0, err
	}
	return fresh, missing, nil
}

// RecordPoison stores a change that can never apply.
func (s *Syncer) RecordPoison(ctx context.Context, msg mqhandler.Message, cause error) error {
	f := domain.SyncFailure{Entity: "change", EntityID: msg.ID, Reason: cause.Error(), Payload: string(msg.Body)}
	if ev, err := mq.DecodeChange(msg.Body); err == nil {
		f.Entity, f.EntityID, f.Version = ev.Entity, ev.ID, ev.Version
	}
	return s.store.RecordSyncFailure(ctx, f)
}

// HoldWhileUnreachable makes the handler keep a change while probe fails (see Hold): probe is a
// PING of the cache's Redis.
func (s *Syncer) HoldWhileUnreachable(probe func(ctx context.Context) error) *Syncer {
	s.hold = Hold{Probe: probe, Every: 500 * time.Millisecond, Max: 20 * time.Second, Margin: 5 * time.Second}
	return s
}

// Handler is the full middleware chain the function runs.
func (s *Syncer) Handler() mqhandler.Handler {
	return mqhandler.Chain(s.Handle,
		mqhandler.Poison(s.RecordPoison),
		s.hold.Middleware(),
		mqhandler.Retry{MaxRetries: 2, InitialInterval: 50 * time.Millisecond, MaxInterval: 200 * time.Millisecond, Jitter: 0.2}.Middleware(),
		mqhandler.Recoverer(),
	)
}
