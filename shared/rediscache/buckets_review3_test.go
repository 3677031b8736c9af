package rediscache

// The third review of the bucketed stock: interleavings that sold a unit twice, broke a per-user limit
// or left stock unsold, each failing before its fix.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// Finding (oversell, eviction): a loan is applied once per loan id only because the borrower's
// loans-in hash remembers it. That hash is a key of its own, written once per loan and never read
// again until the sweep re-sends the loan (the lender's loans-out record stays until then, 30 s and
// more): the least recently used key of a hot bucket, so the first one allkeys-lru evicts while the
// bucket's entry, touched by every claim, stays. The sweep then re-sends the receipt, finds no record,
// the same generation, an open bucket, and grows the borrower's allocation a second time: the
// allocations add up to more than the stock and the units are sold twice.
func TestALoanIsAppliedOnceEvenIfTheBorrowersRecordIsEvicted(t *testing.T) {
	c, rdb, _ := newReviewCache(t)
	ctx := context.Background()
	const n = 2
	apply(t, c, bucketed("hot", 8, 1, n)) // allocations 4 / 4
	granted := 0
	for _, u := range usersHomedIn(0, n, 5, "a") {
		if out := claim(t, c, u, "hot", "r"); out.Code == "" {
			granted++ // the fifth borrows 2 units from bucket 1
		}
	}
	if granted != 5 {
		t.Fatalf("granted %d of 5", granted)
	}
	// The borrower's record of the loan is evicted (its entry stays: claims keep touching it).
	if err := rdb.Del(ctx, keysOfBucket("hot", 0).loansIn).Err(); err != nil {
		t.Fatal(err)
	}
	// The timer's sweep, well after the loan, completes the loans it finds in the lenders' records.
	if _, err := c.SweepPending(ctx, "hot", time.Hour, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	alloc, issued := allocations(t, rdb, "hot", n)
	for i := 0; i < 40; i++ {
		if out := claim(t, c, fmt.Sprintf("late%d", i), "hot", "r"); out.Code == "" {
			granted++
		}
	}
	if sum(alloc) > 8 || granted > 8 {
		t.Fatalf("stock 8: allocations %v (sum %d, issued %v) after the sweep re-sent an applied loan; granted %d",
			alloc, sum(alloc), issued, granted)
	}
}

// Finding (oversell, eviction, rebuild.go): the reconciler rebuilds an evicted campaign entry with the
// reservations still pending counted (rebuildCampaign's floor is the claims MySQL and the streams hold
// plus cc.Pending), but the cache view of an absent entry is empty: Campaign returns Pending 0 although
// the pending set outlived the entry. apply_campaign.lua writes an absent entry's issued as the floor
// alone, so each reservation that survived the eviction is counted nowhere: its unit is sold again to
// someone else, and when the reservation is later confirmed it is issued too (or, released, it lowers
// issued below the truth again). This test runs the reconciler's steps as rebuild.go does them.
func TestARebuiltEntryCountsTheReservationsThatOutlivedIt(t *testing.T) {
	c, rdb, _ := newReviewCache(t)
	ctx := context.Background()
	camp := campaign("pts", 3, 1)
	camp.CostPoints = 10
	apply(t, c, camp)
	for _, u := range []string{"p0", "p1", "q0", "q1", "q2", "q3"} {
		credit(t, c, u, 100, 1)
	}
	// Two paid claims reserve their units; their invocations are still debiting (or died: the sweep
	// resolves them later).
	for _, u := range []string{"p0", "p1"} {
		ck := keysOfBucket("pts", 0)
		if _, err := c.scripts.claim.Run(ctx, c.rdb, []string{ck.camp, ck.held, ck.claims, ck.grants, ck.pending, c.markers.of(ck.camp)},
			append(claimArgs(u, "r", "slow"), 100)...).Result(); err != nil {
			t.Fatal(err)
		}
	}
	// The campaign's entry alone is evicted; its holdings, claim records and pending set remain.
	if err := rdb.Del(ctx, keysOfCampaign("pts").camp).Err(); err != nil {
		t.Fatal(err)
	}
	// reconcile.go: the view, then DriftMissing -> rebuildCampaign(rec, scan.missing, cc.Pending).
	cc, err := c.Campaign(ctx, "pts")
	if err != nil {
		t.Fatal(err)
	}
	if drift := domain.Reconcile(domain.DBView{Version: 1, Stock: 3}, domain.CacheView{Present: cc.Present}, cc.Pending); drift != domain.DriftMissing {
		t.Fatalf("drift %q", drift)
	}
	var all []domain.Claim // MySQL holds no claim yet, nor do the streams
	if err := c.RestoreClaims(ctx, camp, all); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RepairCampaign(ctx, camp, int64(len(all))+cc.Pending, 0); err != nil {
		t.Fatal(err)
	}
	granted := 0
	for _, u := range []string{"q0", "q1", "q2", "q3"} {
		if out := claim(t, c, u, "pts", "r"); out.Code == "" {
			granted++
		}
	}
	// The two reservations complete (their debits went through).
	for _, u := range []string{"p0", "p1"} {
		if _, err := c.confirm(ctx, domain.Claim{ID: domain.ClaimID(u, "r"), CampaignID: "pts", UserID: u}, false); err != nil {
			t.Fatal(err)
		}
		granted++
	}
	if granted > 3 {
		t.Fatalf("stock 3: %d units issued; the rebuild counted none of the 2 reservations (view pending %d)", granted, cc.Pending)
	}
}

// evictBucket deletes every key of bucket b of campaign id, as an eviction of the whole bucket would.
func evictBucket(t *testing.T, rdb redis.UniversalClient, id string, b int) {
	k := keysOfBucket(id, b)
	if err := rdb.Del(context.Background(), k.camp, k.held, k.claims, k.grants, k.pending, k.loansIn, k.loansOut).Err(); err != nil {
		t.Error(err)
	}
}

// afterPrecheck runs fn once, right after applyBuckets' bucketsPresent pipeline.
type afterPrecheck struct {
	fn   func()
	done bool
}

func (h *afterPrecheck) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *afterPrecheck) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *afterPrecheck) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if !h.done && len(cmds) > 0 && cmds[0].Name() == "exists" {
			h.done = true
			h.fn()
		}
		return err
	}
}

// Finding (oversell, eviction with two deliveries of a campaign's first change): the second review
// lets only a change whose precheck found no bucket at all create buckets ('create'), so that a bucket
// evicted after the precheck is not recreated beside present ones. But the precheck is as old as the
// delivery's pause: delivery A of v1 finds nothing (the campaign is new) and stalls; delivery B of the
// same v1 creates and opens every bucket, claims sell bucket 2's share, and bucket 2 is evicted whole.
// A resumes in 'create' mode: buckets 0, 1, 3 answer "opened for v1" with the seals B made (nothing
// issued), bucket 2 is created afresh, and A opens it with the share computed from those seals. Its
// units are sold a second time. Only the delivery that created bucket 0 may create the others.
func TestOnlyTheDeliveryThatCreatedBucketZeroCreatesBuckets(t *testing.T) {
	c, rdb, _ := newReviewCache(t)
	ctx := context.Background()
	const n = 4
	camp := bucketed("new", 100, 1, n)
	sold := 0
	h := &afterPrecheck{}
	h.fn = func() {
		// Delivery B, while A is paused after its precheck.
		if res, err := c.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
			t.Errorf("delivery B: %+v %v", res, err)
		}
		for _, u := range usersHomedIn(2, n, 25, "s") {
			if out := claim(t, c, u, "new", "r"); out.Code == "" {
				sold++
			}
		}
		evictBucket(t, rdb, "new", 2)
	}
	rdb.AddHook(h)
	res, err := c.ApplyCampaign(ctx, camp, 0) // delivery A
	t.Logf("delivery A: %+v %v (B sold %d in bucket 2)", res, err, sold)
	granted := sold
	for i := 0; i < 400; i++ {
		if out := claim(t, c, fmt.Sprintf("late%d", i), "new", "r"); out.Code == "" {
			granted++
		}
	}
	if granted > 100 {
		alloc, issued := allocations(t, rdb, "new", n)
		t.Fatalf("stock 100: granted %d (alloc %v issued %v)", granted, alloc, issued)
	}
}
