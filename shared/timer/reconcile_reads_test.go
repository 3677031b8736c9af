package timer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
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
	if run := c.meanwhile; run != nil && err == nil {
		c.meanwhile = nil
		err = run(ctx)
	}
	return cc, err
}

// confirmFails makes the next confirmation of a points claim fail, as if its invocation died between
// the debit and the confirmation: the unit stays reserved (pending), debited.
type confirmFails struct{ armed bool }

func (h *confirmFails) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *confirmFails) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *confirmFails) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// confirm.lua is the one script whose three keys end with the campaign's pending set.
		args := cmd.Args()
		if h.armed && (cmd.Name() == "evalsha" || cmd.Name() == "eval") && len(args) > 5 && fmt.Sprint(args[2]) == "3" {
			if k, _ := args[5].(string); strings.HasSuffix(k, ":pending") {
				h.armed = false
				cmd.SetErr(errors.New("the invocation died before confirming"))
				return cmd.Err()
			}
		}
		return next(ctx, cmd)
	}
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
			hook := &confirmFails{armed: true}
			f.rdb.AddHook(hook)
			alice := rediscache.ClaimInput{UserID: "alice", CampaignID: "pts", RequestID: "r1", Now: t0, By: domain.ByClaim}
			if _, err := f.cache.Claim(ctx, alice); err == nil || hook.armed {
				t.Fatalf("alice's claim was to die before its confirmation: %v (hook still armed: %v)", err, hook.armed)
			}
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
