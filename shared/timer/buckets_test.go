package timer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/timer"
)

// A campaign whose stock is split into buckets goes through the timer's jobs as one of one bucket
// does: the replay sends what MySQL lacks from every bucket's stream and trims each stream, reconcile
// finds nothing to fix, and a rebuild after a loss puts every claim back in its user's bucket.
func TestBucketedCampaignThroughReplayReconcileAndRebuild(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const buckets = 4
	f.campaign("hot", true, func(c *domain.Campaign) { c.Stock, c.PerUserLimit, c.Buckets = 40, 1, buckets })
	var all []domain.Claim
	homes := map[int]bool{}
	for u := 0; u < 20; u++ {
		user := fmt.Sprintf("user%d", u)
		out := f.claim(user, "hot", "r", t0)
		if out.Code != "" {
			t.Fatalf("claim %d: %+v", u, out)
		}
		all = append(all, out.Claim)
		homes[domain.HomeBucket(user, buckets)] = true
	}
	if len(homes) < 3 {
		t.Fatalf("20 users homed in buckets %v only; the test would not cover several streams", homes)
	}
	// The ledger got every other grant; the rest were never published.
	var half []domain.Claim
	for i, c := range all {
		if i%2 == 0 {
			half = append(half, c)
		}
	}
	if _, err := f.store.RecordClaims(ctx, half); err != nil {
		t.Fatal(err)
	}
	f.mq.OnGrant = recordIn(f.store)
	j := f.jobs(t0.Add(time.Minute), timer.Config{ReplayAge: 5 * time.Second})
	r, err := j.Run(ctx, timer.JobGrantReplay)
	if err != nil || r.Replayed != 10 {
		t.Fatalf("replay: %+v %v", r, err)
	}
	if n := f.count("SELECT COUNT(*) FROM claims WHERE campaign_id = 'hot'"); n != 20 {
		t.Fatalf("MySQL holds %d of the 20 claims after the replay", n)
	}
	r, err = j.Run(ctx, timer.JobGrantReplay)
	if err != nil || r.Replayed != 0 {
		t.Fatalf("second replay: %+v %v", r, err)
	}
	if left, _ := f.cache.ReadGrants(ctx, "hot", "0", 100); len(left) != 0 {
		t.Fatalf("the streams still hold %d grants MySQL has", len(left))
	}
	if r, err := j.Run(ctx, timer.JobReconcile); err != nil || len(r.Fixed) != 0 {
		t.Fatalf("reconcile of a clean bucketed campaign: %+v %v", r, err)
	}

	if err := services.FlushAll(ctx, f.rdb); err != nil {
		t.Fatal(err)
	}
	f.withBroker()
	r, err = f.jobs(t0.Add(time.Minute), timer.Config{ClaimWindow: 300 * time.Millisecond}).Run(ctx, timer.JobCacheRebuild)
	if err != nil || !r.Rebuilt || r.Campaigns != 1 {
		t.Fatalf("rebuild: %+v %v", r, err)
	}
	cc, err := f.cache.Campaign(ctx, "hot")
	if err != nil || !cc.Present || cc.Issued != 20 || cc.Remaining != 20 || cc.Stock != 40 {
		t.Fatalf("rebuilt view: %+v %v", cc, err)
	}
	for _, c := range all {
		if out := f.claim(c.UserID, "hot", "r", t0.Add(time.Hour)); out.Code != "" || !out.Replayed || out.Claim.ID != c.ID {
			t.Fatalf("retry of %s after the rebuild: %+v", c.UserID, out)
		}
		if out := f.claim(c.UserID, "hot", "again", t0.Add(time.Hour)); out.Code != domain.CodeLimitReached {
			t.Fatalf("%s over the limit after the rebuild: %+v", c.UserID, out)
		}
	}
	granted := 0
	for u := 0; u < 60; u++ {
		if out := f.claim(fmt.Sprintf("late%d", u), "hot", "r", t0.Add(time.Hour)); out.Code == "" {
			granted++
		}
	}
	if granted != 20 {
		t.Fatalf("granted %d after the rebuild, want the 20 left", granted)
	}
}
