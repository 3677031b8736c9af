package timer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/cachesync"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/timer"
)

// busyCacheDuringReconcile is the cache while users keep claiming: right after the reconciler's first
// read of a campaign's cache view, meanwhile runs.
type busyCacheDuringReconcile struct {
	*rediscache.Cache
	meanwhile func(ctx context.Context) error
}

func (c *busyCacheDuringReconcile) Campaign(ctx context.Context, id string) (rediscache.CachedCampaign, error) {
	cc, err := c.Cache.Campaign(ctx, id)
	return cc, runOnce(ctx, &c.meanwhile, err)
}

// runOnce runs *meanwhile the first time it is called after a read that succeeded, then forgets it.
func runOnce(ctx context.Context, meanwhile *func(context.Context) error, readErr error) error {
	run := *meanwhile
	if run == nil || readErr != nil {
		return readErr
	}
	*meanwhile = nil
	return run(ctx)
}

// confirmFails makes the next confirmation of a points claim fail, as if its invocation died between
// the debit and the confirmation: the unit stays reserved (pending), debited. With debit set, the next
// debit fails instead: the unit stays reserved, never debited, and the sweep releases it.
type confirmFails struct{ armed, debit bool }

func (h *confirmFails) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *confirmFails) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *confirmFails) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// confirm.lua is the one script whose three keys end with the campaign's pending set, debit.lua
		// the one whose two end with the user's debits.
		args := cmd.Args()
		if h.armed && (cmd.Name() == "evalsha" || cmd.Name() == "eval") && len(args) > 4 {
			var match bool
			switch keys := fmt.Sprint(args[2]); {
			case !h.debit && keys == "3" && len(args) > 5:
				k, _ := args[5].(string)
				match = strings.HasSuffix(k, ":pending")
			case h.debit && keys == "2":
				k, _ := args[4].(string)
				match = strings.HasSuffix(k, ":debits")
			}
			if match {
				h.armed = false
				cmd.SetErr(errors.New("the invocation died"))
				return cmd.Err()
			}
		}
		return next(ctx, cmd)
	}
}

// claimDies makes user's points claim on campaign die half-way, as a killed invocation's would: after
// its debit (the unit stays reserved, debited) or, with beforeDebit, before it (reserved, never
// debited). It returns the claim's input, for a retry.
func claimDies(t *testing.T, f *fixture, user, campaign string, beforeDebit bool) rediscache.ClaimInput {
	t.Helper()
	hook := &confirmFails{armed: true, debit: beforeDebit}
	f.rdb.AddHook(hook)
	in := rediscache.ClaimInput{UserID: user, CampaignID: campaign, RequestID: "r1", Now: t0, By: domain.ByClaim}
	if _, err := f.cache.Claim(context.Background(), in); err == nil || hook.armed {
		t.Fatalf("%s's claim was to die half-way (before its debit: %v): %v (hook still armed: %v)", user, beforeDebit, err, hook.armed)
	}
	return in
}

// Found by the fault suite (seed 237, a claim function killed twice): a points claim reserved when the
// reconciler read the cache view, then granted and recorded in MySQL before it read MySQL, was counted
// twice, as a reservation and in MySQL's count. The cache looked behind MySQL, and the repair raised its
// issued count one above the truth for good (a repair never lowers it): one unit never sold, and a
// cache that never again equalled MySQL.
func TestReconcileCountsAReservationGrantedMeanwhileOnce(t *testing.T) {
	for _, when := range []string{"after its first read of the cache", "after its stream scan"} {
		t.Run(when, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.campaign("pts", true, func(c *domain.Campaign) { c.Stock = 10; c.CostPoints = 10 })
			f.user("alice", t0.Add(-48*time.Hour), 100)
			f.user("bob", t0.Add(-48*time.Hour), 100)
			alice := claimDies(t, f, "alice", "pts", false)
			if cc, err := f.cache.Campaign(ctx, "pts"); err != nil || cc.Pending != 1 || cc.Issued != 1 {
				t.Fatalf("before the reconcile: %+v %v, want one unit reserved", cc, err)
			}
			meanwhile := func(ctx context.Context) error {
				a, err := f.cache.Claim(ctx, alice) // her retry confirms the reservation
				if err != nil || a.Code != "" {
					return errors.Join(err, errors.New("alice's retry: "+string(a.Code)))
				}
				b := f.claim("bob", "pts", "r1", t0)
				if b.Code != "" {
					return errors.New("bob: " + string(b.Code))
				}
				_, err = f.store.RecordClaims(ctx, []domain.Claim{a.Claim, b.Claim})
				return err
			}
			var store timer.Store = f.store
			var cache timer.Cache = f.cache
			if when == "after its first read of the cache" {
				cache = &busyCacheDuringReconcile{Cache: f.cache, meanwhile: meanwhile}
			} else {
				store = &busyDuringReconcile{Store: f.store, meanwhile: meanwhile}
			}
			j := timer.New(store, cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
			r, err := j.Run(ctx, timer.JobReconcile)
			if err != nil {
				t.Fatal(err)
			}
			if cc, _ := f.cache.Campaign(ctx, "pts"); cc.Issued != 2 || cc.Remaining != 8 || cc.Pending != 0 {
				t.Fatalf("cache after reconcile: issued %d remaining %d pending %d, want 2, 8 and 0 (two claims); fixes %+v",
					cc.Issued, cc.Remaining, cc.Pending, r.Fixed)
			}
			if len(r.Fixed) != 0 {
				t.Fatalf("nothing drifted, yet the reconciler fixed %+v", r.Fixed)
			}
		})
	}
}

// A grant made after the reconciler scanned the stream and read MySQL is in the cache's later view
// only: on its way, not lost, and not reported as drift.
func TestReconcileDoesNotReportAGrantMadeWhileItReadAsLost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp", true, func(c *domain.Campaign) { c.Stock = 10 })
	store := &busyDuringReconcile{Store: f.store, meanwhile: func(ctx context.Context) error {
		if out := f.claim("bob", "cmp", "r1", t0); out.Code != "" {
			return errors.New("bob: " + string(out.Code))
		}
		return nil
	}}
	j := timer.New(store, f.cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 0 {
		t.Fatalf("a grant on its way reported: %+v %v", r.Fixed, err)
	}
	// Lost for real (its stream entry gone, MySQL without it), it is reported.
	if err := f.rdb.Del(ctx, "bn:{c:cmp}:grants").Err(); err != nil {
		t.Fatal(err)
	}
	r, err = f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 1 || r.Fixed[0].Drift != string(domain.DriftIssuedAhead) {
		t.Fatalf("a lost grant: %+v %v", r.Fixed, err)
	}
}

// afterMySQL is MySQL while the campaign keeps changing: right after the reconciler's snapshot of a
// campaign's count (IssuedAndRecorded), meanwhile runs.
type afterMySQL struct {
	*mysqlstore.Store
	meanwhile func(ctx context.Context) error
}

func (s *afterMySQL) IssuedAndRecorded(ctx context.Context, id string, ids []string) (int64, map[string]bool, error) {
	n, rec, err := s.Store.IssuedAndRecorded(ctx, id, ids)
	return n, rec, runOnce(ctx, &s.meanwhile, err)
}

// A change applied after the reconciler read MySQL's row is never rolled back: found by review of an
// order that read the cache after MySQL, where the cache then looked ahead of the row and the repair
// wrote the old row (its stock, its status) back over the change.
func TestReconcileNeverRollsBackAChangeAppliedWhileItRead(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp", true, func(c *domain.Campaign) { c.Stock = 10 })
	store := &afterMySQL{Store: f.store, meanwhile: func(ctx context.Context) error {
		stock := int64(3)
		if _, _, err := f.store.UpdateCampaign(ctx, "cmp", 1, domain.CampaignPatch{Stock: &stock}); err != nil {
			return err
		}
		return cachesync.New(f.store, f.cache).Apply(ctx, mq.ChangeEvent{Entity: mq.EntityCampaign, ID: "cmp", Version: 2})
	}}
	j := timer.New(store, f.cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil {
		t.Fatal(err)
	}
	if cc, _ := f.cache.Campaign(ctx, "cmp"); cc.Version != 2 || cc.Stock != 3 || cc.Remaining != 3 {
		t.Fatalf("cache after reconcile: version %d stock %d remaining %d, want the change (2, 3, 3); fixes %+v", cc.Version, cc.Stock, cc.Remaining, r.Fixed)
	}
}

// An evicted entry is rebuilt with each claim counted once: a reservation granted and recorded while
// the reconciler read is in MySQL's list and was counted again as reserved (issued one too high).
func TestReconcileRebuildsAnEvictedEntryCountingAReservationGrantedMeanwhileOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("pts", true, func(c *domain.Campaign) { c.Stock = 10; c.CostPoints = 10 })
	f.user("alice", t0.Add(-48*time.Hour), 100)
	claimDies(t, f, "alice", "pts", false)
	if err := f.rdb.Del(ctx, "bn:{c:pts}:camp").Err(); err != nil {
		t.Fatal(err)
	}
	store := &busyDuringReconcile{Store: f.store, meanwhile: func(ctx context.Context) error {
		// The sweep confirms her debited reservation, and the ledger records it.
		if _, err := f.cache.SweepPending(ctx, "pts", 0, t0.Add(time.Minute)); err != nil {
			return err
		}
		gs, err := f.cache.ReadGrants(ctx, "pts", "0", 10)
		if err != nil || len(gs) != 1 {
			return fmt.Errorf("the stream after the sweep: %v %v", gs, err)
		}
		_, err = f.store.RecordClaims(ctx, []domain.Claim{gs[0].Claim})
		return err
	}}
	j := timer.New(store, f.cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 1 || r.Fixed[0].Action != "rebuilt" {
		t.Fatalf("reconcile: %+v %v, want the entry rebuilt", r.Fixed, err)
	}
	if cc, _ := f.cache.Campaign(ctx, "pts"); cc.Issued != 1 || cc.Remaining != 9 {
		t.Fatalf("rebuilt: issued %d remaining %d, want 1 and 9 (alice's claim)", cc.Issued, cc.Remaining)
	}
}

// A reservation released while the reconciler read is not counted in the repair's floor: counted, the
// repair raised issued one above the truth for good.
func TestReconcileRepairDoesNotCountAReservationReleasedMeanwhile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("pts", true, func(c *domain.Campaign) { c.Stock = 10; c.CostPoints = 10 })
	f.user("alice", t0.Add(-48*time.Hour), 100)
	f.user("bob", t0.Add(-48*time.Hour), 100)
	claimDies(t, f, "alice", "pts", true)
	// bob's grant reached MySQL, but the cache lost its count: a real drift, which the repair mends.
	b := f.claim("bob", "pts", "r1", t0)
	if b.Code != "" {
		t.Fatal(b.Code)
	}
	if _, err := f.store.RecordClaims(ctx, []domain.Claim{b.Claim}); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.HIncrBy(ctx, "bn:{c:pts}:camp", "issued", -1).Err(); err != nil {
		t.Fatal(err)
	}
	store := &busyDuringReconcile{Store: f.store, meanwhile: func(ctx context.Context) error {
		// The sweep finds her reservation never debited and releases it.
		sw, err := f.cache.SweepPending(ctx, "pts", 0, t0.Add(time.Minute))
		if err == nil && sw.Released != 1 {
			err = fmt.Errorf("sweep %+v, want one released", sw)
		}
		return err
	}}
	j := timer.New(store, f.cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil {
		t.Fatal(err)
	}
	if cc, _ := f.cache.Campaign(ctx, "pts"); cc.Issued != 1 || cc.Remaining != 9 || cc.Pending != 0 {
		t.Fatalf("repaired: issued %d remaining %d pending %d, want 1, 9 and 0 (bob's claim); fixes %+v", cc.Issued, cc.Remaining, cc.Pending, r.Fixed)
	}
}

// afterReservations is the cache while the sweep runs: right after the reconciler listed a campaign's
// reservations, meanwhile runs.
type afterReservations struct {
	*rediscache.Cache
	meanwhile func(ctx context.Context) error
}

func (c *afterReservations) Reservations(ctx context.Context, id string) ([]domain.Reservation, error) {
	rs, err := c.Cache.Reservations(ctx, id)
	return rs, runOnce(ctx, &c.meanwhile, err)
}

// losesCounts records bob's grant in MySQL and takes lost from the cache's issued count: a drift the
// repair must mend once the cache counts fewer than MySQL, so that its floor shows.
func losesCounts(t *testing.T, f *fixture, campaign string, lost int64) {
	t.Helper()
	ctx := context.Background()
	b := f.claim("bob", campaign, "r1", t0)
	if b.Code != "" {
		t.Fatal(b.Code)
	}
	if _, err := f.store.RecordClaims(ctx, []domain.Claim{b.Claim}); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.HIncrBy(ctx, "bn:{c:"+campaign+"}:camp", "issued", -lost).Err(); err != nil {
		t.Fatal(err)
	}
}

// A reservation listed, then granted before the stream scan and not yet recorded, is in the stream and
// among the reservations: one claim id, counted once in the repair's floor.
func TestReconcileCountsAReservationGrantedBeforeTheScanOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("pts", true, func(c *domain.Campaign) { c.Stock = 10; c.CostPoints = 10 })
	f.user("alice", t0.Add(-48*time.Hour), 100)
	f.user("bob", t0.Add(-48*time.Hour), 100)
	claimDies(t, f, "alice", "pts", false)
	losesCounts(t, f, "pts", 2) // alice's reservation and bob's grant: the cache counts 0, MySQL 1
	cache := &afterReservations{Cache: f.cache, meanwhile: func(ctx context.Context) error {
		sw, err := f.cache.SweepPending(ctx, "pts", 0, t0.Add(time.Minute)) // confirms her: debited
		if err == nil && sw.Confirmed != 1 {
			err = fmt.Errorf("sweep %+v, want one confirmed", sw)
		}
		return err
	}}
	j := timer.New(f.store, cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil {
		t.Fatal(err)
	}
	if cc, _ := f.cache.Campaign(ctx, "pts"); cc.Issued != 2 || cc.Remaining != 8 || cc.Pending != 0 {
		t.Fatalf("repaired: issued %d remaining %d pending %d, want 2, 8 and 0 (alice's and bob's claims); fixes %+v",
			cc.Issued, cc.Remaining, cc.Pending, r.Fixed)
	}
}

// An evicted entry is rebuilt with the reservations it still holds counted: left out, the unit
// reserved would be sold again once its claim is granted.
func TestReconcileRebuildCountsAReservationStillHeld(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("pts", true, func(c *domain.Campaign) { c.Stock = 10; c.CostPoints = 10 })
	f.user("alice", t0.Add(-48*time.Hour), 100)
	claimDies(t, f, "alice", "pts", false)
	if err := f.rdb.Del(ctx, "bn:{c:pts}:camp").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 1 || r.Fixed[0].Action != "rebuilt" {
		t.Fatalf("reconcile: %+v %v, want the entry rebuilt", r.Fixed, err)
	}
	if cc, _ := f.cache.Campaign(ctx, "pts"); cc.Issued != 1 || cc.Remaining != 9 || cc.Pending != 1 {
		t.Fatalf("rebuilt: issued %d remaining %d pending %d, want 1, 9 and 1 (alice's reservation)", cc.Issued, cc.Remaining, cc.Pending)
	}
}
