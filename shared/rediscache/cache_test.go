package rediscache

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
)

func TestMain(m *testing.M) { services.Main(m) }

var now = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

func newCache(t *testing.T) (*Cache, redis.UniversalClient) {
	t.Helper()
	rdb := services.Env(t).Redis(t)
	rdb.AddHook(oneSlotPerCommand{})
	c := New(rdb)
	if err := c.MarkReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, rdb
}

func campaign(id string, stock, limit int64) domain.Campaign {
	return domain.Campaign{
		ID: id, Name: "test", Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim,
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), Stock: stock, PerUserLimit: limit,
		Status: domain.StatusActive, Version: 1,
	}
}

func apply(t *testing.T, c *Cache, camp domain.Campaign) ApplyResult {
	t.Helper()
	r, err := c.ApplyCampaign(context.Background(), camp, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func claim(t *testing.T, c *Cache, user, campaignID, request string) ClaimOutcome {
	t.Helper()
	out, err := c.Claim(context.Background(), ClaimInput{UserID: user, CampaignID: campaignID, RequestID: request, Now: now, By: domain.ByClaim})
	if err != nil {
		t.Fatalf("claim %s/%s: %v", user, request, err)
	}
	return out
}

func streamClaims(t *testing.T, c *Cache, campaignID string) []domain.Claim {
	t.Helper()
	var out []domain.Claim
	after := "0"
	for {
		batch, err := c.ReadGrants(context.Background(), campaignID, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			return out
		}
		for _, g := range batch {
			out = append(out, g.Claim)
		}
		after = batch[len(batch)-1].StreamID
	}
}

func TestConcurrentClaimsNeverOversell(t *testing.T) {
	c, rdb := newCache(t)
	apply(t, c, campaign("c1", 100, 1))
	var granted atomic.Int64
	var wg sync.WaitGroup
	users := make(chan int, 1000)
	for u := 0; u < 1000; u++ {
		users <- u
	}
	close(users)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range users {
				// Each user tries twice with different request ids: the per-user limit must hold.
				for r := 0; r < 2; r++ {
					out, err := c.Claim(context.Background(), ClaimInput{UserID: fmt.Sprintf("u%d", u), CampaignID: "c1",
						RequestID: fmt.Sprintf("r%d", r), Now: now, By: domain.ByClaim})
					if err != nil {
						t.Error(err)
						return
					}
					if out.Code == "" {
						granted.Add(1)
					} else if out.Code != domain.CodeSoldOut && out.Code != domain.CodeLimitReached {
						t.Errorf("unexpected code %s", out.Code)
					}
				}
			}
		}()
	}
	wg.Wait()
	if granted.Load() != 100 {
		t.Fatalf("granted %d, want exactly 100", granted.Load())
	}
	held, err := rdb.HGetAll(context.Background(), keysOfCampaign("c1").held).Result()
	if err != nil {
		t.Fatal(err)
	}
	for u, n := range held {
		if n != "1" {
			t.Fatalf("user %s holds %s units, limit 1", u, n)
		}
	}
	seen := map[string]bool{}
	for _, cl := range streamClaims(t, c, "c1") {
		if seen[cl.ID] {
			t.Fatalf("claim %s twice in the stream", cl.ID)
		}
		seen[cl.ID] = true
	}
	if len(seen) != 100 || len(held) != 100 {
		t.Fatalf("stream has %d grants, held has %d users; want 100 each", len(seen), len(held))
	}
	cc, _ := c.Campaign(context.Background(), "c1")
	if cc.Issued != 100 || cc.Remaining != 0 {
		t.Fatalf("cache counters %+v", cc)
	}
}

func TestStockLoweredWhileClaiming(t *testing.T) {
	c, _ := newCache(t)
	camp := campaign("big", 100000, 1)
	apply(t, c, camp)
	var wg sync.WaitGroup
	var stop atomic.Bool
	var next atomic.Int64
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				u := next.Add(1)
				if _, err := c.Claim(context.Background(), ClaimInput{UserID: fmt.Sprintf("u%d", u), CampaignID: "big",
					RequestID: "r", Now: now, By: domain.ByClaim}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	before, _ := c.Campaign(context.Background(), "big")
	camp.Stock, camp.Version = 10, 2
	res := apply(t, c, camp)
	if !res.Applied {
		t.Fatal("newer version not applied")
	}
	// issued at the instant of the change is at least what we read just before it.
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	after, _ := c.Campaign(context.Background(), "big")
	if before.Issued == 0 {
		t.Fatal("no claim ran before the change; the test proves nothing")
	}
	// Claims that raced the change are bounded by what was issued when the script applied it; claims
	// after it find remaining = max(0, 10 − issued) = 0 unless fewer than 10 had been issued.
	limit := max(int64(10), after.Issued)
	if after.Issued > limit || after.Remaining != max(0, 10-after.Issued) || after.Remaining < 0 {
		t.Fatalf("after lowering: %+v (issued before %d)", after, before.Issued)
	}
	n := len(streamClaims(t, c, "big"))
	if int64(n) != after.Issued {
		t.Fatalf("stream has %d grants, issued %d", n, after.Issued)
	}
	// Nothing more is issued once stock is below issued.
	out := claim(t, c, "late", "big", "r")
	if before.Issued >= 10 && out.Code != domain.CodeSoldOut {
		t.Fatalf("late claim: %+v", out)
	}
}

func TestVersionFence(t *testing.T) {
	c, _ := newCache(t)
	ctx := context.Background()
	for _, v := range []int64{3, 1, 2} {
		camp := campaign("f", 10*v, 1)
		camp.Version = v
		apply(t, c, camp)
	}
	cc, _ := c.Campaign(ctx, "f")
	if cc.Version != 3 || cc.Stock != 30 {
		t.Fatalf("after 3,1,2: %+v", cc)
	}
	if out := claim(t, c, "u", "f", "r"); out.Code != "" {
		t.Fatal(out.Code)
	}
	for _, v := range []int64{1, 2, 3} {
		camp := campaign("f", 999, 1)
		camp.Version = v
		if r := apply(t, c, camp); r.Applied || r.CachedVersion != 3 {
			t.Fatalf("replaying version %d: %+v", v, r)
		}
	}
	cc, _ = c.Campaign(ctx, "f")
	if cc.Version != 3 || cc.Stock != 30 || cc.Issued != 1 || cc.Remaining != 29 {
		t.Fatalf("replays changed the cache: %+v", cc)
	}
	u := UserState{ID: "uf", RegisteredAt: now, Credits: 50, Version: 2}
	if r, _ := c.ApplyUser(ctx, u); !r.Applied {
		t.Fatal("user v2 not applied")
	}
	u.Credits, u.Version = 10, 1
	if r, _ := c.ApplyUser(ctx, u); r.Applied {
		t.Fatal("user v1 applied over v2")
	}
	if cu, _ := c.User(ctx, "uf"); cu.Balance != 50 || cu.Version != 2 {
		t.Fatalf("user cache %+v", cu)
	}
}

func TestSameRequestConcurrently(t *testing.T) {
	c, _ := newCache(t)
	apply(t, c, campaign("idem", 5, 3))
	var wg sync.WaitGroup
	outs := make([]ClaimOutcome, 20)
	for i := range outs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			outs[i] = claim(t, c, "u1", "idem", "req-1")
		}(i)
	}
	wg.Wait()
	fresh := 0
	for _, o := range outs {
		if o.Code != "" || o.Claim != outs[0].Claim {
			t.Fatalf("answers differ: %+v vs %+v", o, outs[0])
		}
		if !o.Replayed {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d fresh grants for one request", fresh)
	}
	if cc, _ := c.Campaign(context.Background(), "idem"); cc.Issued != 1 {
		t.Fatalf("issued %d", cc.Issued)
	}
	// Whatever happens since, the same request answers the same claim.
	camp := campaign("idem", 0, 3)
	camp.Status, camp.Version = domain.StatusPaused, 2
	apply(t, c, camp)
	again := claim(t, c, "u1", "idem", "req-1")
	if again.Code != "" || !again.Replayed || again.Claim != outs[0].Claim {
		t.Fatalf("after pause and sell-out: %+v", again)
	}
	// The same request id for another campaign still answers the original claim.
	apply(t, c, campaign("other", 5, 1))
	cross := claim(t, c, "u1", "other", "req-1")
	if cross.Code != "" || cross.Claim.CampaignID != "idem" || !cross.Replayed {
		t.Fatalf("request reused for another campaign: %+v", cross)
	}
	if cc, _ := c.Campaign(context.Background(), "other"); cc.Issued != 0 {
		t.Fatal("reused request id issued a second unit")
	}
}

func paidCampaign(id string, cost int64) domain.Campaign {
	camp := campaign(id, 10, 5)
	camp.CostPoints = cost
	return camp
}

func credit(t *testing.T, c *Cache, user string, credits int64, version int64) {
	t.Helper()
	if _, err := c.ApplyUser(context.Background(), UserState{ID: user, RegisteredAt: now.Add(-time.Hour), Credits: credits, Version: version}); err != nil {
		t.Fatal(err)
	}
}

func TestPointsDebitedOnceAndNeverNegative(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	apply(t, c, paidCampaign("paid", 30))
	credit(t, c, "p", 50, 1)
	first := claim(t, c, "p", "paid", "a")
	for i := 0; i < 5; i++ {
		if again := claim(t, c, "p", "paid", "a"); again.Code != "" || again.Claim != first.Claim {
			t.Fatalf("retry %d: %+v", i, again)
		}
	}
	if first.Code != "" || first.Claim.CostPoints != 30 {
		t.Fatalf("first: %+v", first)
	}
	if cu, _ := c.User(ctx, "p"); cu.Balance != 20 {
		t.Fatalf("balance %d after one 30-point claim from 50", cu.Balance)
	}
	before, _ := c.Campaign(ctx, "paid")
	streamBefore := len(streamClaims(t, c, "paid"))
	tokensBefore, _ := rdb.HGet(ctx, keysOfCampaign("paid").camp, "reservations").Result()
	refused := claim(t, c, "p", "paid", "b")
	// Refused before a unit was reserved: a reservation the debit would only release shows other
	// claims a unit taken that is never issued.
	if tokens, _ := rdb.HGet(ctx, keysOfCampaign("paid").camp, "reservations").Result(); tokens != tokensBefore {
		t.Fatalf("a user who could not pay reserved a unit (reservation tokens %s -> %s)", tokensBefore, tokens)
	}
	if refused.Code != domain.CodeInsufficientPoints {
		t.Fatalf("second claim with 20 points: %+v", refused)
	}
	after, _ := c.Campaign(ctx, "paid")
	held, _ := rdb.HGet(ctx, keysOfCampaign("paid").held, "p").Result()
	if after.Issued != before.Issued || after.Remaining != before.Remaining || held != "1" || len(streamClaims(t, c, "paid")) != streamBefore || after.Pending != 0 {
		t.Fatalf("a refused claim changed state: before %+v after %+v held %s", before, after, held)
	}
	if cu, _ := c.User(ctx, "p"); cu.Balance != 20 {
		t.Fatalf("balance %d after refusal", cu.Balance)
	}
	credit(t, c, "p", 80, 2)
	if ok := claim(t, c, "p", "paid", "b"); ok.Code != "" || ok.Replayed {
		t.Fatalf("retry after credit: %+v", ok)
	}
	if cu, _ := c.User(ctx, "p"); cu.Balance != 20 {
		t.Fatalf("balance %d, want 80-60", cu.Balance)
	}
	if unknown := claim(t, c, "nobody", "paid", "x"); unknown.Code != domain.CodeInsufficientPoints {
		t.Fatalf("user without points: %+v", unknown)
	}
}

// reserveOnly runs the saga up to the stock reservation and stops, as a crashed function would.
func reserveOnly(t *testing.T, c *Cache, user, campaignID, request string) string {
	t.Helper()
	in := ClaimInput{UserID: user, CampaignID: campaignID, RequestID: request, Now: now, By: domain.ByClaim}
	b, err := c.begin(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	id := domain.ClaimID(user, request)
	ck := keysOfCampaign(campaignID)
	v, err := c.scripts.claim.Run(context.Background(), c.rdb, []string{ck.camp, ck.held, ck.claims, ck.grants, ck.pending, c.markers.of(ck.camp)},
		user, id, request, now.UnixMilli(), "claim", 1, b.profile.RegisteredAt.UnixMilli(), 0).Result()
	if err != nil || v.([]any)[0] != "ok" {
		t.Fatalf("reserve: %v %v", v, err)
	}
	return id
}

func TestCrashBetweenReservationAndDebit(t *testing.T) {
	ctx := context.Background()
	t.Run("sweep releases and voids the debit", func(t *testing.T) {
		c, _ := newCache(t)
		apply(t, c, paidCampaign("s1", 30))
		credit(t, c, "p", 100, 1)
		id := reserveOnly(t, c, "p", "s1", "a")
		if cc, _ := c.Campaign(ctx, "s1"); cc.Issued != 1 || cc.Pending != 1 {
			t.Fatalf("reservation: %+v", cc)
		}
		if r, err := c.SweepPending(ctx, "s1", time.Minute, now); err != nil || r.Released+r.Confirmed != 0 {
			t.Fatalf("a fresh reservation must be left alone: %+v %v", r, err)
		}
		r, err := c.SweepPending(ctx, "s1", time.Second, now.Add(time.Minute))
		if err != nil || r.Released != 1 {
			t.Fatalf("sweep: %+v %v", r, err)
		}
		if cc, _ := c.Campaign(ctx, "s1"); cc.Issued != 0 || cc.Remaining != 10 || cc.Pending != 0 {
			t.Fatalf("after release: %+v", cc)
		}
		uk := keysOfUser("p")
		if v, _ := c.scripts.debit.Run(ctx, c.rdb, []string{uk.user, uk.debits}, id, 30, 1).Text(); v != "void" {
			t.Fatalf("a late debit after the release answered %q", v)
		}
		if cu, _ := c.User(ctx, "p"); cu.Balance != 100 {
			t.Fatalf("balance %d: no points may be taken for a released unit", cu.Balance)
		}
		if again := claim(t, c, "p", "s1", "a"); again.Code != "" {
			t.Fatalf("the released request may be retried afresh: %+v", again)
		}
		if cu, _ := c.User(ctx, "p"); cu.Balance != 70 {
			t.Fatalf("balance %d after the retried claim, want 100-30", cu.Balance)
		}
	})
	t.Run("a retry completes the saga", func(t *testing.T) {
		c, _ := newCache(t)
		apply(t, c, paidCampaign("s2", 30))
		credit(t, c, "p", 100, 1)
		reserveOnly(t, c, "p", "s2", "a")
		out := claim(t, c, "p", "s2", "a")
		if out.Code != "" {
			t.Fatalf("retry: %+v", out)
		}
		cc, _ := c.Campaign(ctx, "s2")
		if cu, _ := c.User(ctx, "p"); cu.Balance != 70 || cc.Issued != 1 || cc.Pending != 0 || len(streamClaims(t, c, "s2")) != 1 {
			t.Fatalf("after retry: balance %d cache %+v", cu.Balance, cc)
		}
	})
	t.Run("crash after the debit: sweep confirms", func(t *testing.T) {
		c, _ := newCache(t)
		apply(t, c, paidCampaign("s3", 30))
		credit(t, c, "p", 100, 1)
		id := reserveOnly(t, c, "p", "s3", "a")
		uk := keysOfUser("p")
		if v, _ := c.scripts.debit.Run(ctx, c.rdb, []string{uk.user, uk.debits}, id, 30, 1).Text(); v != "ok" {
			t.Fatalf("debit: %s", v)
		}
		r, err := c.SweepPending(ctx, "s3", time.Second, now.Add(time.Minute))
		if err != nil || r.Confirmed != 1 {
			t.Fatalf("sweep: %+v %v", r, err)
		}
		grants := streamClaims(t, c, "s3")
		if cu, _ := c.User(ctx, "p"); cu.Balance != 70 || len(grants) != 1 || grants[0].ID != id {
			t.Fatalf("after confirm: balance %d grants %v", cu.Balance, grants)
		}
	})
}

func TestRefusalsThroughTheScript(t *testing.T) {
	c, _ := newCache(t)
	ctx := context.Background()
	thirty := 30
	mk := func(id string, mutate func(*domain.Campaign)) string {
		camp := campaign(id, 10, 1)
		mutate(&camp)
		apply(t, c, camp)
		return id
	}
	boundary := now.Add(-30 * 24 * time.Hour)
	for _, u := range []UserState{
		{ID: "member", RegisteredAt: now.Add(-400 * 24 * time.Hour), Member: true, Version: 1},
		{ID: "plain", RegisteredAt: now.Add(-400 * 24 * time.Hour), Version: 1},
		{ID: "fresh", RegisteredAt: boundary.Add(time.Millisecond), Version: 1},
		{ID: "edge", RegisteredAt: boundary, Version: 1},
	} {
		if _, err := c.ApplyUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, campaign, user string
		want                 domain.Code
	}{
		{"not started", mk("early", func(c *domain.Campaign) { c.StartsAt = now.Add(time.Second) }), "plain", domain.CodeNotStarted},
		{"ended", mk("late", func(c *domain.Campaign) { c.EndsAt = now }), "plain", domain.CodeEnded},
		{"paused", mk("paused", func(c *domain.Campaign) { c.Status = domain.StatusPaused }), "plain", domain.CodePaused},
		{"sold out", mk("empty", func(c *domain.Campaign) { c.Stock = 0 }), "plain", domain.CodeSoldOut},
		{"grant mode", mk("grant", func(c *domain.Campaign) { c.Mode = domain.ModeGrant }), "plain", domain.CodeNotClaimable},
		{"members: member", mk("members", func(c *domain.Campaign) { c.Audience.Segment = domain.SegmentMembers }), "member", ""},
		{"members: non-member", "members", "plain", domain.CodeNotEligible},
		{"members: unknown user", "members", "stranger", domain.CodeNotEligible},
		{"new users: inside", mk("new", func(c *domain.Campaign) {
			c.Audience = domain.Audience{Segment: domain.SegmentNewUsers, NewUserDays: &thirty}
		}), "fresh", ""},
		{"new users: on the boundary", "new", "edge", domain.CodeNotEligible},
		{"new users: old", "new", "plain", domain.CodeNotEligible},
		{"unknown campaign", "nope", "plain", domain.CodeCampaignNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if out := claim(t, c, tc.user, tc.campaign, "r-"+tc.name); out.Code != tc.want {
				t.Fatalf("code %q, want %q", out.Code, tc.want)
			}
		})
	}
}

// TestScriptAgreesWithDomain runs random states through claim.lua and domain.DecideClaim.
func TestScriptAgreesWithDomain(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(42))
	segments := []domain.Segment{domain.SegmentAll, domain.SegmentMembers, domain.SegmentNewUsers}
	for i := 0; i < 300; i++ {
		id := fmt.Sprintf("q%d", i)
		days := 1 + rng.Intn(60)
		camp := campaign(id, int64(rng.Intn(4)), int64(1+rng.Intn(3)))
		camp.Audience = domain.Audience{Segment: segments[rng.Intn(3)]}
		if camp.Audience.Segment == domain.SegmentNewUsers {
			camp.Audience.NewUserDays = &days
		}
		if rng.Intn(5) == 0 {
			camp.Status = domain.StatusPaused
		}
		if rng.Intn(6) == 0 {
			camp.Mode = domain.ModeGrant
		}
		camp.StartsAt = now.Add(time.Duration(rng.Intn(7200)-3600) * time.Second)
		camp.EndsAt = camp.StartsAt.Add(time.Duration(1+rng.Intn(7200)) * time.Second)
		issued := int64(rng.Intn(5))
		if _, err := c.ApplyCampaign(ctx, camp, issued); err != nil {
			t.Fatal(err)
		}
		held := int64(rng.Intn(4))
		if held > 0 {
			rdb.HSet(ctx, keysOfCampaign(id).held, "u", held)
		}
		profile := domain.Profile{}
		if rng.Intn(4) != 0 {
			profile = domain.Profile{Known: true, Member: rng.Intn(2) == 0,
				RegisteredAt: now.Add(-time.Duration(rng.Intn(90*24)) * time.Hour).Truncate(time.Millisecond)}
		}
		user := fmt.Sprintf("user%d", i)
		if profile.Known {
			c.ApplyUser(ctx, UserState{ID: user, RegisteredAt: profile.RegisteredAt, Member: profile.Member, Version: 1})
		}
		rdb.HSet(ctx, keysOfCampaign(id).held, user, held)
		want := domain.DecideClaim(domain.ClaimState{Campaign: camp, Issued: issued, Held: held, Profile: profile, Now: now}, domain.ByClaim)
		out := claim(t, c, user, id, "r")
		if out.Code != want {
			t.Fatalf("state %d: script says %q, domain says %q (campaign %+v issued %d held %d profile %+v)", i, out.Code, want, camp, issued, held, profile)
		}
	}
}

func TestCacheLossFailsClosed(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	apply(t, c, campaign("lost", 10, 1))
	if out := claim(t, c, "u", "lost", "a"); out.Code != "" {
		t.Fatal(out.Code)
	}
	if err := services.FlushAll(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	out := claim(t, c, "u2", "lost", "b")
	if out.Code != domain.CodeUnavailable {
		t.Fatalf("after the cache was lost: %+v", out)
	}
	if n, _ := rdb.Exists(ctx, keysOfCampaign("lost").camp, keysOfCampaign("lost").grants).Result(); n != 0 {
		t.Fatal("a claim on a lost cache wrote campaign state")
	}
	// Rebuild: the recorded claim comes back before stock, then the cache is marked ready.
	prior := domain.Claim{ID: domain.ClaimID("u", "a"), CampaignID: "lost", UserID: "u", RequestID: "a",
		Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500}, GrantedAt: now}
	if err := c.RestoreClaims(ctx, domain.Campaign{ID: "lost"}, []domain.Claim{prior}); err != nil {
		t.Fatal(err)
	}
	// A change event arriving now must not recreate the entry from MySQL's lagging count: the slot is
	// not ready, so only the rebuild writes it.
	if res, err := c.ApplyCampaign(ctx, campaign("lost", 10, 1), 0); err != nil || res.Applied || !res.NotReady() {
		t.Fatalf("fenced apply over restored holdings: %+v %v; want it left to the rebuild", res, err)
	}
	if res, err := c.RepairCampaign(ctx, campaign("lost", 10, 1), 1, 0); err != nil || !res.Applied {
		t.Fatalf("rebuild: %+v %v", res, err)
	}
	if err := c.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	if again := claim(t, c, "u", "lost", "a"); again.Code != "" || !again.Replayed || again.Claim.ID != prior.ID {
		t.Fatalf("the original request after rebuild: %+v", again)
	}
	if limited := claim(t, c, "u", "lost", "c"); limited.Code != domain.CodeLimitReached {
		t.Fatalf("held counts must survive a rebuild: %+v", limited)
	}
	if cc, _ := c.Campaign(ctx, "lost"); cc.Issued != 1 || cc.Remaining != 9 {
		t.Fatalf("after rebuild: %+v", cc)
	}
	if ok := claim(t, c, "u3", "lost", "d"); ok.Code != "" {
		t.Fatalf("a new user after rebuild: %+v", ok)
	}
}

func TestNoScriptFallback(t *testing.T) {
	c, rdb := newCache(t)
	apply(t, c, campaign("ns", 10, 5))
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if out := claim(t, c, "u", "ns", "a"); out.Code != "" {
		t.Fatalf("after SCRIPT FLUSH: %+v", out)
	}
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	camp := campaign("ns", 20, 5)
	camp.Version = 2
	if r := apply(t, c, camp); !r.Applied {
		t.Fatal("apply after SCRIPT FLUSH")
	}
}

func TestRateLimit(t *testing.T) {
	c, _ := newCache(t)
	apply(t, c, campaign("rl", 100, 100))
	limited := 0
	var retry time.Duration
	for i := 0; i < 8; i++ {
		out, err := c.Claim(context.Background(), ClaimInput{UserID: "fast", CampaignID: "rl", RequestID: fmt.Sprint(i), Now: now, RateLimit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if out.Code == domain.CodeRateLimited {
			limited++
			retry = out.RetryAfter
		}
	}
	if limited != 3 || retry <= 0 || retry > time.Second {
		t.Fatalf("limited %d (retry after %s), want 3 of 8 at 5/s", limited, retry)
	}
	// A retry of a granted request is an answer, not new load: never limited.
	if out, _ := c.Claim(context.Background(), ClaimInput{UserID: "fast", CampaignID: "rl", RequestID: "0", Now: now, RateLimit: 5}); out.Code != "" || !out.Replayed {
		t.Fatalf("replay under the limit: %+v", out)
	}
}

func TestGrantStreamTrim(t *testing.T) {
	c, _ := newCache(t)
	apply(t, c, campaign("tr", 10, 1))
	for i := 0; i < 5; i++ {
		claim(t, c, fmt.Sprintf("u%d", i), "tr", "r")
	}
	all, _ := c.ReadGrants(context.Background(), "tr", "0", 100)
	if len(all) != 5 {
		t.Fatalf("%d grants", len(all))
	}
	if err := c.TrimGrants(context.Background(), "tr", all[2].StreamID); err != nil {
		t.Fatal(err)
	}
	rest, _ := c.ReadGrants(context.Background(), "tr", "0", 100)
	if len(rest) != 2 || rest[0].StreamID != all[3].StreamID {
		t.Fatalf("after trimming up to the third: %v", rest)
	}
}

func TestResendAfterFollowsTheClientsOptions(t *testing.T) {
	cases := []struct {
		name string
		rdb  redis.UniversalClient
		want time.Duration
	}{
		{"as shared/wiring sets it", redis.NewClient(&redis.Options{ReadTimeout: time.Second, MaxRetries: 1}), time.Second},
		{"go-redis's defaults", redis.NewClient(&redis.Options{}), 5 * time.Second},
		{"no retries", redis.NewClient(&redis.Options{ReadTimeout: time.Second, MaxRetries: -1}), 0},
		{"no read deadline", redis.NewClient(&redis.Options{ReadTimeout: -1, MaxRetries: 1}), 0},
		{"no read deadline set at all", redis.NewClient(&redis.Options{ReadTimeout: -2, MaxRetries: 1}), 0},
		{"a cluster client as shared/wiring sets it", redis.NewClusterClient(&redis.ClusterOptions{ReadTimeout: time.Second, MaxRetries: 1}), time.Second},
		{"a cluster client's default retries (none)", redis.NewClusterClient(&redis.ClusterOptions{ReadTimeout: time.Second}), 0},
		{"another kind of client", redis.NewRing(&redis.RingOptions{}), 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.rdb.Close()
			if got := resendAfterFor(tc.rdb); got != tc.want {
				t.Fatalf("resendAfterFor = %s, want %s", got, tc.want)
			}
		})
	}
}
