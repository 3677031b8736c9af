package rediscache

import (
	"context"
	"testing"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// The same (user, request_id) claimed at once for two campaigns: the second must not move the binding
// while the first is still deciding, or both would grant (found in review).
func TestOneRequestIDIsNeverGrantedInTwoCampaigns(t *testing.T) {
	c, _ := newCache(t)
	ctx := context.Background()
	apply(t, c, campaign("ca", 10, 1))
	apply(t, c, campaign("cb", 10, 1))
	in1 := ClaimInput{UserID: "u1", CampaignID: "ca", RequestID: "r1", Now: now, By: domain.ByClaim}
	b, err := c.begin(ctx, in1)
	if err != nil || b.cacheLost || b.bound != "ca" {
		t.Fatal(err, b.cacheLost, b.bound)
	}
	out2 := claim(t, c, "u1", "cb", "r1")
	out1, err := c.decide(ctx, in1, domain.ClaimID("u1", "r1"), b, keysOfBucket("ca", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	if out2.Code != domain.CodeUnavailable {
		t.Fatalf("the same request id for another campaign while the first is running = %+v, want unavailable", out2)
	}
	if out1.Code != "" || out1.Claim.CampaignID != "ca" {
		t.Fatalf("the first claim = %+v, want granted in ca", out1)
	}
	// Retried later, the request gets the first claim's answer, not a second claim.
	again := claim(t, c, "u1", "cb", "r1")
	if again.Code != "" || !again.Replayed || again.Claim.CampaignID != "ca" {
		t.Fatalf("retry for cb = %+v, want the replay of the claim in ca", again)
	}
	if n := len(streamClaims(t, c, "cb")); n != 0 {
		t.Fatalf("cb granted %d units for a request id already granted in ca", n)
	}
}

// A redelivered change applied after the campaign entry was evicted must not reset issued to MySQL's
// lagging count: the grants in flight would be sold again (found in review).
func TestFencedApplyDoesNotRecreateAnEvictedCampaign(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	camp := campaign("ce", 2, 1)
	apply(t, c, camp)
	claim(t, c, "u1", "ce", "r1")
	claim(t, c, "u2", "ce", "r2")
	rdb.Del(ctx, keysOfCampaign("ce").camp)                                   // evicted; the ledger has written nothing yet
	if res, err := c.ApplyCampaign(ctx, camp, 0); err != nil || res.Applied { // a redelivered change, dbIssued=0
		t.Fatalf("fenced apply over an evicted entry: %+v %v", res, err)
	}
	got := 0
	for _, u := range []string{"u3", "u4", "u5"} {
		if out := claim(t, c, u, "ce", "r"); out.Code == "" {
			got++
		}
	}
	if n := len(streamClaims(t, c, "ce")); n != 2 || got != 0 {
		t.Fatalf("stock 2: %d units in the stream, %d granted after the eviction", n, got)
	}
}

// The reconciler repairs from the row and cached version it saw; a newer change applied meanwhile wins
// (found in review).
func TestRepairNeverRollsBackANewerVersion(t *testing.T) {
	c, _ := newCache(t)
	ctx := context.Background()
	old := campaign("cr", 100, 5)
	apply(t, c, old)
	newer := old
	newer.Version, newer.Stock = 2, 1
	apply(t, c, newer)                                                           // operator lowered stock to 1, applied by cachesync
	if res, err := c.RepairCampaign(ctx, old, 0, 1); err != nil || res.Applied { // it saw version 1
		t.Fatalf("repair with a stale view: %+v %v", res, err)
	}
	if cc, _ := c.Campaign(ctx, "cr"); cc.Version != 2 || cc.Stock != 1 {
		t.Fatalf("repair rolled the cache back: %+v", cc)
	}
	if res, err := c.RepairCampaign(ctx, newer, 0, 2); err != nil || !res.Applied {
		t.Fatalf("repair with a current view: %+v %v", res, err)
	}
}

// The sweeper's late release of an abandoned reservation must not release a retry's new one, or the
// retry would debit points for a claim that no longer exists (found in review).
func TestAStaleReleaseLeavesARetrysReservation(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	p := campaign("ps", 10, 1)
	p.CostPoints = 10
	apply(t, c, p)
	if _, err := c.ApplyUser(ctx, UserState{ID: "u1", RegisteredAt: now, Credits: 100, Version: 1}); err != nil {
		t.Fatal(err)
	}
	in := ClaimInput{UserID: "u1", CampaignID: "ps", RequestID: "r1", Now: now, By: domain.ByClaim}
	id := domain.ClaimID("u1", "r1")
	ck := keysOfCampaign("ps")
	// step 1+2 of the original request, then it stalls (crash or GC pause) before debit
	b, _ := c.begin(ctx, in)
	res, err := c.scripts.claim.Run(ctx, rdb, []string{ck.camp, ck.held, ck.claims, ck.grants, ck.pending, c.markers.of(ck.camp)},
		"u1", id, "r1", now.UnixMilli(), "claim", 1, b.profile.RegisteredAt.UnixMilli(), 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	raw := res.([]any)[1].(string)
	stored, cl, _ := decodeClaim(raw)
	// sweeper: void then (later) release
	if v, _ := c.scripts.voidDebit.Run(ctx, rdb, []string{keysOfUser("u1").debits}, id, stored.Reservation).Text(); v != "void" {
		t.Fatal(v)
	}
	// the original wakes up: debit says void -> release + unbind -> 503
	if out, err := c.finish(ctx, in, id, raw, false, b); err != nil || out.Code != domain.CodeUnavailable {
		t.Fatal(out, err)
	}
	// the client retries: a fresh reservation; it stalls after step 2
	b, _ = c.begin(ctx, in)
	res, _ = c.scripts.claim.Run(ctx, rdb, []string{ck.camp, ck.held, ck.claims, ck.grants, ck.pending, c.markers.of(ck.camp)},
		"u1", id, "r1", now.UnixMilli(), "claim", 1, b.profile.RegisteredAt.UnixMilli(), 0).Result()
	raw2 := res.([]any)[1].(string)
	// the sweeper's stale release lands now
	if err := c.release(ctx, cl, stored.Reservation); err != nil {
		t.Fatal(err)
	}
	out, err := c.finish(ctx, in, id, raw2, false, b)
	u, _ := c.User(ctx, "u1")
	if err != nil || out.Code != "" || out.Claim.ID != id || u.Balance != 90 {
		t.Fatalf("retry after a stale release: %+v %v, balance %d; want granted, 90 points left", out, err, u.Balance)
	}
}
