package timer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/cachesync"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mq/mqtest"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/storetest"
	"github.com/benefit-issuance/benefits/shared/timer"
)

func TestMain(m *testing.M) { services.Main(m) }

var t0 = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

// recordIn stands in for the ledger: a published grant is written to MySQL at once.
func recordIn(store *mysqlstore.Store) func(context.Context, domain.Claim) error {
	return func(ctx context.Context, c domain.Claim) error {
		_, err := store.RecordClaims(ctx, []domain.Claim{c})
		return err
	}
}

type fixture struct {
	t     *testing.T
	store *mysqlstore.Store
	rdb   redis.UniversalClient
	cache *rediscache.Cache
	mq    *mqtest.Publisher
	src   timer.GrantSource // the grant backstop's group, when the test started a broker (withBroker)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store := storetest.MySQL(t)
	cache, rdb := storetest.ReadyRedis(t)
	return &fixture{t: t, store: store, rdb: rdb, cache: cache, mq: &mqtest.Publisher{}}
}

func (f *fixture) jobs(now time.Time, cfg timer.Config) *timer.Jobs {
	return timer.New(f.store, f.cache, f.mq, f.src, func() time.Time { return now }, cfg)
}

// campaign stores a campaign in MySQL and, when cached, applies it to Redis as cachesync would.
func (f *fixture) campaign(id string, cached bool, mutate func(*domain.Campaign)) domain.Campaign {
	f.t.Helper()
	c := domain.Campaign{ID: id, Name: id, Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim,
		StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(24 * time.Hour), Stock: 100, PerUserLimit: 1, Status: domain.StatusActive}
	if mutate != nil {
		mutate(&c)
	}
	ctx := context.Background()
	created, _, err := f.store.CreateCampaign(ctx, c)
	if err != nil {
		f.t.Fatal(err)
	}
	if cached {
		f.sync(id)
	}
	return created
}

func (f *fixture) sync(campaignID string) {
	f.t.Helper()
	if err := cachesync.New(f.store, f.cache).Apply(context.Background(), mq.ChangeEvent{Entity: mq.EntityCampaign, ID: campaignID, Version: 1}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) user(id string, registered time.Time, credits int64) {
	f.t.Helper()
	ctx := context.Background()
	if _, _, err := f.store.PutUser(ctx, id, domain.UserPut{RegisteredAt: registered}); err != nil {
		f.t.Fatal(err)
	}
	if credits > 0 {
		if _, _, err := f.store.CreditPoints(ctx, id, domain.PointsCredit{Delta: credits, RequestID: "seed"}); err != nil {
			f.t.Fatal(err)
		}
	}
	rec, err := f.store.User(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.cache.ApplyUser(ctx, rediscache.UserState{ID: id, RegisteredAt: rec.User.RegisteredAt, Member: rec.User.Member,
		Credits: rec.Credited, Debits: rec.Debited, Version: rec.User.Version}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) claim(user, campaign, request string, at time.Time) rediscache.ClaimOutcome {
	f.t.Helper()
	out, err := f.cache.Claim(context.Background(), rediscache.ClaimInput{UserID: user, CampaignID: campaign, RequestID: request, Now: at, By: domain.ByClaim})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fixture) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.store.DB().QueryRow(q, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func TestOutboxRelayRepublishesUnsentRows(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp_a", false, nil)
	f.user("alice", t0, 0) // a put and a credit would be two rows; no credit here: one row
	time.Sleep(20 * time.Millisecond)
	// Fresh rows are left to the writer's own publish.
	if r, err := f.jobs(t0, timer.Config{OutboxAge: time.Hour}).Run(ctx, timer.JobOutboxRelay); err != nil || r.Published != 0 {
		t.Fatalf("fresh rows: %+v %v", r, err)
	}
	j := f.jobs(t0, timer.Config{OutboxAge: time.Millisecond})
	f.mq.Fail(errors.New("broker down"))
	r, err := j.Run(ctx, timer.JobOutboxRelay)
	if err == nil || r.Failed != 2 || r.Published != 0 {
		t.Fatalf("failing broker: %+v %v", r, err)
	}
	if n := f.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"); n != 2 {
		t.Fatalf("%d unsent rows after a failed relay, want 2", n)
	}
	f.mq.Fail(nil)
	f.mq.Forget()
	r, err = j.Run(ctx, timer.JobOutboxRelay)
	if err != nil || r.Published != 2 || r.Job != timer.JobOutboxRelay {
		t.Fatalf("relay: %+v %v", r, err)
	}
	changes := f.mq.Changes()
	want := map[mq.ChangeEvent]bool{{Entity: "campaign", ID: "cmp_a", Version: 1}: true, {Entity: "user", ID: "alice", Version: 1}: true}
	if len(changes) != 2 || !want[changes[0]] || !want[changes[1]] || changes[0] == changes[1] {
		t.Fatalf("published %+v", changes)
	}
	if n := f.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"); n != 0 {
		t.Fatalf("%d rows still unsent", n)
	}
	if r, err := j.Run(ctx, timer.JobOutboxRelay); err != nil || r.Published != 0 {
		t.Fatalf("second relay: %+v %v", r, err)
	}
}

func TestGrantReplayRecordsGrantsMissingFromMySQL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp_a", true, func(c *domain.Campaign) { c.Stock = 10 })
	at := t0
	recorded := f.claim("alice", "cmp_a", "r1", at)
	lost := f.claim("bob", "cmp_a", "r1", at.Add(time.Second))
	fresh := f.claim("carol", "cmp_a", "r1", at.Add(9*time.Second))
	if recorded.Code != "" || lost.Code != "" || fresh.Code != "" {
		t.Fatalf("claims: %+v %+v %+v", recorded, lost, fresh)
	}
	// The ledger got alice's grant; bob's publish failed; carol's is still on its way.
	if _, err := f.store.RecordClaims(ctx, []domain.Claim{recorded.Claim}); err != nil {
		t.Fatal(err)
	}
	f.mq.OnGrant = recordIn(f.store)
	j := f.jobs(t0.Add(10*time.Second), timer.Config{ReplayAge: 5 * time.Second})
	r, err := j.Run(ctx, timer.JobGrantReplay)
	if err != nil || r.Replayed != 1 || r.Trimmed != 1 || r.Campaigns != 1 {
		t.Fatalf("replay: %+v %v", r, err)
	}
	grants := f.mq.Grants()
	if len(grants) != 1 || grants[0].ID != lost.Claim.ID || grants[0].UserID != "bob" {
		t.Fatalf("replayed %+v, want bob's grant only", grants)
	}
	have, _ := f.store.ExistingClaims(ctx, []string{recorded.Claim.ID, lost.Claim.ID, fresh.Claim.ID})
	if !have[recorded.Claim.ID] || !have[lost.Claim.ID] || have[fresh.Claim.ID] {
		t.Fatalf("in MySQL: %v", have)
	}
	if rec, _ := f.store.Campaign(ctx, "cmp_a"); rec.Issued != 2 {
		t.Fatalf("issued %d, want 2", rec.Issued)
	}
	// Later, carol's grant is old enough; bob's is in MySQL and is trimmed, not sent again.
	j = f.jobs(t0.Add(time.Minute), timer.Config{ReplayAge: 5 * time.Second})
	r, err = j.Run(ctx, timer.JobGrantReplay)
	if err != nil || r.Replayed != 1 || r.Trimmed != 1 {
		t.Fatalf("second replay: %+v %v", r, err)
	}
	grants = f.mq.Grants()
	if len(grants) != 2 || grants[1].ID != fresh.Claim.ID {
		t.Fatalf("replayed %+v", grants)
	}
	r, err = j.Run(ctx, timer.JobGrantReplay)
	if err != nil || r.Replayed != 0 || r.Trimmed != 1 {
		t.Fatalf("third replay: %+v %v", r, err)
	}
	if left, _ := f.cache.ReadGrants(ctx, "cmp_a", "0", 10); len(left) != 0 {
		t.Fatalf("stream still holds %d grants MySQL has", len(left))
	}
	if rec, _ := f.store.Campaign(ctx, "cmp_a"); rec.Issued != 3 {
		t.Fatalf("issued %d, want 3", rec.Issued)
	}
	// A failing broker leaves nothing lost: the grant stays in the stream for the next run.
	late := f.claim("dave", "cmp_a", "r1", t0.Add(2*time.Minute))
	f.mq.Fail(errors.New("broker down"))
	j = f.jobs(t0.Add(time.Hour), timer.Config{ReplayAge: 5 * time.Second})
	if r, err := j.Run(ctx, timer.JobGrantReplay); err == nil || r.Failed != 1 {
		t.Fatalf("failing replay: %+v %v", r, err)
	}
	if left, _ := f.cache.ReadGrants(ctx, "cmp_a", "0", 10); len(left) != 1 || left[0].Claim.ID != late.Claim.ID {
		t.Fatalf("stream after a failed replay: %+v", left)
	}
}

func TestReconcileReportsAndFixesDrift(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.mq.OnChange = cachesync.New(f.store, f.cache).Apply
	f.campaign("ok", true, nil)
	f.campaign("stale", true, nil)
	f.campaign("evicted", true, func(c *domain.Campaign) { c.PerUserLimit = 2 })
	f.campaign("ended", true, func(c *domain.Campaign) { c.StartsAt = t0.Add(-72 * time.Hour); c.EndsAt = t0.Add(-48 * time.Hour) })
	// stale: MySQL moved to version 2 (stock 5) and the change never reached the cache.
	stock := int64(5)
	if _, _, err := f.store.UpdateCampaign(ctx, "stale", 1, domain.CampaignPatch{Stock: &stock}); err != nil {
		t.Fatal(err)
	}
	// evicted: two recorded grants, then the campaign's hash is lost.
	for _, u := range []string{"alice", "bob"} {
		out := f.claim(u, "evicted", "r1", t0)
		if _, err := f.store.RecordClaims(ctx, []domain.Claim{out.Claim}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.rdb.Del(ctx, "bn:{c:evicted}:camp").Err(); err != nil {
		t.Fatal(err)
	}
	// ended long ago: out of reconciliation, even when its cache entry is gone.
	if err := f.rdb.Del(ctx, "bn:{c:ended}:camp").Err(); err != nil {
		t.Fatal(err)
	}
	j := f.jobs(t0, timer.Config{ReconcileGrace: time.Hour})
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil || r.Campaigns != 3 {
		t.Fatalf("reconcile: %+v %v", r, err)
	}
	fixes := map[string]timer.Fix{}
	for _, fx := range r.Fixed {
		fixes[fx.ID] = fx
	}
	if len(fixes) != 2 || fixes["stale"].Drift != "stale_version" || fixes["stale"].Action != "republished" ||
		fixes["evicted"].Drift != "missing" || fixes["evicted"].Action != "rebuilt" {
		t.Fatalf("fixes: %+v", r.Fixed)
	}
	changes := f.mq.Changes()
	if len(changes) != 1 || changes[0] != (mq.ChangeEvent{Entity: "campaign", ID: "stale", Version: 2}) {
		t.Fatalf("published %+v", changes)
	}
	if cc, _ := f.cache.Campaign(ctx, "stale"); cc.Version != 2 || cc.Stock != 5 || cc.Remaining != 5 {
		t.Fatalf("stale after reconcile: %+v", cc)
	}
	if cc, _ := f.cache.Campaign(ctx, "evicted"); !cc.Present || cc.Version != 1 || cc.Issued != 2 || cc.Remaining != 98 {
		t.Fatalf("evicted after reconcile: %+v", cc)
	}
	// The rebuilt campaign still knows who holds what.
	if out := f.claim("alice", "evicted", "r1", t0); out.Code != "" || !out.Replayed {
		t.Fatalf("replay after rebuild: %+v", out)
	}
	if cc, _ := f.cache.Campaign(ctx, "ended"); cc.Present {
		t.Fatalf("an ended campaign was rebuilt: %+v", cc)
	}
	r, err = j.Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 0 {
		t.Fatalf("second reconcile: %+v %v", r, err)
	}
	// A republish that fails is reported as such and returned as an error.
	if _, _, err := f.store.UpdateCampaign(ctx, "ok", 1, domain.CampaignPatch{Stock: &stock}); err != nil {
		t.Fatal(err)
	}
	f.mq.Fail(errors.New("broker down"))
	r, err = j.Run(ctx, timer.JobReconcile)
	if err == nil || len(r.Fixed) != 1 || r.Fixed[0].ID != "ok" || r.Fixed[0].Action == "republished" {
		t.Fatalf("failing republish: %+v %v", r, err)
	}
	// A cache that is not ready is left to cache-rebuild.
	f.cache.ClearReady(ctx)
	r, err = j.Run(ctx, timer.JobReconcile)
	if err != nil || r.Note == "" || len(r.Fixed) != 0 || r.Campaigns != 0 {
		t.Fatalf("not ready: %+v %v", r, err)
	}
}

func TestReconcileCountsGrantsInFlight(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp", true, nil)
	f.claim("alice", "cmp", "r1", t0) // in the stream, not yet in MySQL: not drift
	j := f.jobs(t0, timer.Config{})
	if r, err := j.Run(ctx, timer.JobReconcile); err != nil || len(r.Fixed) != 0 {
		t.Fatalf("in flight: %+v %v", r, err)
	}
	// The grant vanished from the stream without reaching MySQL: Redis counts a unit MySQL never got.
	if err := f.rdb.Del(ctx, "bn:{c:cmp}:grants").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := j.Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 1 || r.Fixed[0].Drift != "issued_ahead" || r.Fixed[0].Action != "reported" {
		t.Fatalf("lost grant: %+v %v", r, err)
	}
}

// busyDuringReconcile is MySQL while users keep claiming and the ledger keeps writing: the first time
// the reconciler reads a campaign's row (after it read the cache and scanned the stream), meanwhile
// runs.
type busyDuringReconcile struct {
	*mysqlstore.Store
	meanwhile func(ctx context.Context) error
}

func (s *busyDuringReconcile) Campaign(ctx context.Context, id string) (mysqlstore.CampaignRecord, error) {
	if err := runOnce(ctx, &s.meanwhile, nil); err != nil {
		return mysqlstore.CampaignRecord{}, err
	}
	return s.Store.Campaign(ctx, id)
}

// Grants the ledger writes between the reconciler's stream scan and its read of MySQL are counted
// once: counted in MySQL's count and again as in flight, they made the repair raise issued above the
// truth for good (a repair never lowers it). Found by the fault suite under Redis latency: stock left
// unsold, and a cache that never again equalled MySQL.
func TestReconcileCountsGrantsWrittenMeanwhileOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp", true, func(c *domain.Campaign) { c.Stock = 10; c.PerUserLimit = 5 })
	r1 := f.claim("alice", "cmp", "r1", t0)
	r2 := f.claim("alice", "cmp", "r2", t0)
	store := &busyDuringReconcile{Store: f.store, meanwhile: func(ctx context.Context) error {
		r3 := f.claim("alice", "cmp", "r3", t0)
		_, err := f.store.RecordClaims(ctx, []domain.Claim{r1.Claim, r2.Claim, r3.Claim})
		return err
	}}
	j := timer.New(store, f.cache, f.mq, f.src, func() time.Time { return t0 }, timer.Config{})
	if _, err := j.Run(ctx, timer.JobReconcile); err != nil {
		t.Fatal(err)
	}
	if cc, _ := f.cache.Campaign(ctx, "cmp"); cc.Issued != 3 || cc.Remaining != 7 {
		t.Fatalf("cache after reconcile: issued %d remaining %d, want 3 and 7 (three claims)", cc.Issued, cc.Remaining)
	}
}

func TestScheduledGrantsOldestFirstAndNeverTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.mq.OnGrant = recordIn(f.store)
	start := t0
	f.campaign("g", true, func(c *domain.Campaign) {
		c.Mode, c.Stock, c.StartsAt, c.EndsAt = domain.ModeGrant, 3, start, start.Add(time.Hour)
	})
	f.campaign("members", true, func(c *domain.Campaign) {
		c.Mode, c.Stock, c.StartsAt, c.EndsAt = domain.ModeGrant, 10, start, start.Add(time.Hour)
		c.Audience.Segment = domain.SegmentMembers
	})
	// Registration order: u_old, then u_b and u_a at the same instant (id breaks the tie), then u_new, u_newest.
	for _, u := range []struct {
		id  string
		reg time.Time
	}{{"u_newest", start.Add(-time.Hour)}, {"u_b", start.Add(-48 * time.Hour)}, {"u_new", start.Add(-24 * time.Hour)},
		{"u_old", start.Add(-90 * 24 * time.Hour)}, {"u_a", start.Add(-48 * time.Hour)}} {
		f.user(u.id, u.reg, 0)
	}
	if _, _, err := f.store.PutUser(ctx, "u_new", domain.UserPut{RegisteredAt: start.Add(-24 * time.Hour), Member: true}); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.store.User(ctx, "u_new")
	f.cache.ApplyUser(ctx, rediscache.UserState{ID: "u_new", RegisteredAt: rec.User.RegisteredAt, Member: true, Version: rec.User.Version})

	// Before starts_at nothing is granted.
	if r, err := f.jobs(start.Add(-time.Second), timer.Config{}).Run(ctx, timer.JobScheduledGrants); err != nil || r.Granted != 0 {
		t.Fatalf("early run: %+v %v", r, err)
	}
	j := f.jobs(start.Add(time.Minute), timer.Config{})
	r, err := j.Run(ctx, timer.JobScheduledGrants)
	if err != nil || r.Granted != 4 || r.Campaigns != 2 {
		t.Fatalf("run: %+v %v", r, err)
	}
	grants := f.mq.Grants()
	var order []string
	for _, g := range grants {
		order = append(order, g.CampaignID+":"+g.UserID)
	}
	if fmt.Sprint(order) != "[g:u_old g:u_a g:u_b members:u_new]" {
		t.Fatalf("grant order %v", order)
	}
	for _, g := range grants {
		if g.RequestID != domain.GrantRequestID(g.CampaignID) || g.CostPoints != 0 {
			t.Fatalf("grant %+v", g)
		}
	}
	// Rerunning grants nothing: stock is out and the member already holds one.
	if r, err := j.Run(ctx, timer.JobScheduledGrants); err != nil || r.Granted != 0 {
		t.Fatalf("rerun: %+v %v", r, err)
	}
	// Raising stock grants the next oldest only, never the first three again.
	stock := int64(5)
	if _, _, err := f.store.UpdateCampaign(ctx, "g", 1, domain.CampaignPatch{Stock: &stock}); err != nil {
		t.Fatal(err)
	}
	f.mq.OnChange = cachesync.New(f.store, f.cache).Apply
	f.mq.PublishChange(ctx, mq.ChangeEvent{Entity: "campaign", ID: "g", Version: 2})
	r, err = j.Run(ctx, timer.JobScheduledGrants)
	if err != nil || r.Granted != 2 {
		t.Fatalf("after raising stock: %+v %v", r, err)
	}
	grants = f.mq.Grants()
	if got := fmt.Sprint(grants[4].UserID, " ", grants[5].UserID); got != "u_new u_newest" {
		t.Fatalf("next grantees %s", got)
	}
	if n := f.count("SELECT COUNT(*) FROM claims WHERE campaign_id = 'g'"); n != 5 {
		t.Fatalf("%d grants of g in MySQL, want 5", n)
	}
	if n := f.count("SELECT COUNT(*) FROM (SELECT user_id FROM claims GROUP BY campaign_id, user_id HAVING COUNT(*) > 1) d"); n != 0 {
		t.Fatalf("%d users granted twice", n)
	}
	if cc, _ := f.cache.Campaign(ctx, "g"); cc.Issued != 5 || cc.Remaining != 0 {
		t.Fatalf("cache: %+v", cc)
	}
}

func TestScheduledGrantsBudgetAndUncachedCampaign(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("g", true, func(c *domain.Campaign) { c.Mode, c.Stock, c.StartsAt = domain.ModeGrant, 10, t0 })
	f.campaign("a_uncached", false, func(c *domain.Campaign) { c.Mode, c.Stock, c.StartsAt = domain.ModeGrant, 10, t0 })
	for i := 0; i < 5; i++ {
		f.user(fmt.Sprintf("u%d", i), t0.Add(-time.Duration(10-i)*time.Hour), 0)
	}
	j := f.jobs(t0.Add(time.Minute), timer.Config{GrantBudget: 2})
	r, err := j.Run(ctx, timer.JobScheduledGrants)
	if err != nil || r.Granted != 2 || r.Note == "" || r.Campaigns != 2 {
		t.Fatalf("first run: %+v %v", r, err)
	}
	// Without the ledger nothing reached MySQL, so the next runs rely on Redis to refuse repeats.
	for run := 0; run < 3; run++ {
		if _, err := j.Run(ctx, timer.JobScheduledGrants); err != nil {
			t.Fatal(err)
		}
	}
	grants := f.mq.Grants()
	seen := map[string]bool{}
	for _, g := range grants {
		if g.CampaignID != "g" || seen[g.UserID] {
			t.Fatalf("grants %+v", grants)
		}
		seen[g.UserID] = true
	}
	if len(grants) != 5 {
		t.Fatalf("%d grants, want all 5 users once", len(grants))
	}
	if cc, _ := f.cache.Campaign(ctx, "a_uncached"); cc.Present {
		t.Fatal("the job applied a campaign to the cache itself")
	}
}

func TestCacheRebuildAfterFlush(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("free", true, func(c *domain.Campaign) { c.Stock, c.PerUserLimit = 10, 2 })
	f.campaign("paid", true, func(c *domain.Campaign) { c.Stock, c.CostPoints = 10, 30 })
	f.user("alice", t0.Add(-time.Hour), 100)
	f.user("bob", t0.Add(-time.Hour), 0)
	var all []domain.Claim
	for _, c := range []struct{ user, campaign, req string }{
		{"alice", "free", "a1"}, {"alice", "free", "a2"}, {"bob", "free", "b1"}, {"alice", "paid", "a3"},
	} {
		out := f.claim(c.user, c.campaign, c.req, t0)
		if out.Code != "" {
			t.Fatalf("%+v: %s", c, out.Code)
		}
		all = append(all, out.Claim)
	}
	if _, err := f.store.RecordClaims(ctx, all); err != nil {
		t.Fatal(err)
	}
	if err := services.FlushAll(ctx, f.rdb); err != nil {
		t.Fatal(err)
	}
	if out := f.claim("bob", "free", "b2", t0); out.Code != domain.CodeUnavailable {
		t.Fatalf("claim on a lost cache: %+v", out)
	}
	// Reconcile leaves a lost cache alone.
	if r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile); err != nil || r.Note == "" || len(r.Fixed) != 0 {
		t.Fatalf("reconcile on a lost cache: %+v %v", r, err)
	}
	f.withBroker()
	j := f.jobs(t0, timer.Config{ClaimWindow: 300 * time.Millisecond})
	r, err := j.Run(ctx, timer.JobCacheRebuild)
	if err != nil || !r.Rebuilt || !r.Ready || r.Campaigns != 2 || r.Users != 2 {
		t.Fatalf("rebuild: %+v %v", r, err)
	}
	if ready, _ := f.cache.Ready(ctx); !ready {
		t.Fatal("not marked ready")
	}
	for _, want := range []struct {
		id                string
		issued, remaining int64
	}{{"free", 3, 7}, {"paid", 1, 9}} {
		cc, err := f.cache.Campaign(ctx, want.id)
		if err != nil || !cc.Present || cc.Version != 1 || cc.Issued != want.issued || cc.Remaining != want.remaining {
			t.Fatalf("%s: %+v %v", want.id, cc, err)
		}
	}
	held, err := f.rdb.HGetAll(ctx, "bn:{c:free}:held").Result()
	if err != nil || len(held) != 2 || held["alice"] != "2" || held["bob"] != "1" {
		t.Fatalf("held: %v %v", held, err)
	}
	if cu, _ := f.cache.User(ctx, "alice"); !cu.Present || cu.Balance != 70 {
		t.Fatalf("alice's balance: %+v, want 70", cu)
	}
	// Holdings are enforced again and an old request gets its original answer.
	if out := f.claim("alice", "free", "a9", t0); out.Code != domain.CodeLimitReached {
		t.Fatalf("alice over the limit: %+v", out)
	}
	if out := f.claim("alice", "free", "a1", t0.Add(time.Hour)); out.Code != "" || !out.Replayed || out.Claim.ID != all[0].ID || !out.Claim.GrantedAt.Equal(t0) {
		t.Fatalf("replay after rebuild: %+v", out)
	}
	// So does the same request sent first to another campaign: the request ids' bindings came back with
	// the claims, or "paid" would grant a second claim under a2's claim id.
	if out := f.claim("alice", "paid", "a2", t0); out.Code != "" || !out.Replayed || out.Claim.ID != all[1].ID || out.Claim.CampaignID != "free" {
		t.Fatalf("a2 sent to another campaign after the rebuild: %+v, want free's claim replayed", out)
	}
	if out := f.claim("bob", "free", "b2", t0); out.Code != "" || out.Replayed {
		t.Fatalf("bob's second unit: %+v", out)
	}
	if cc, _ := f.cache.Campaign(ctx, "free"); cc.Issued != 4 || cc.Remaining != 6 {
		t.Fatalf("free after a new claim: %+v", cc)
	}
	// A ready cache is left alone.
	if r, err := j.Run(ctx, timer.JobCacheRebuild); err != nil || r.Rebuilt || !r.Ready {
		t.Fatalf("second rebuild: %+v %v", r, err)
	}
}

func TestUnknownJob(t *testing.T) {
	f := newFixture(t)
	if _, err := f.jobs(t0, timer.Config{}).Run(context.Background(), "nope"); err == nil {
		t.Fatal("an unknown job ran")
	}
}

// An evicted campaign entry is rebuilt with the grants still on their way to MySQL counted and held:
// rebuilding from MySQL alone would sell their stock again.
func TestReconcileRebuildsAnEvictedCampaignWithGrantsInFlight(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("tight", true, func(c *domain.Campaign) { c.Stock = 2 })
	for _, u := range []string{"alice", "bob"} {
		if out := f.claim(u, "tight", "r1", t0); out.Code != "" {
			t.Fatalf("claim by %s: %+v", u, out)
		}
	}
	if err := f.rdb.Del(ctx, "bn:{c:tight}:camp").Err(); err != nil {
		t.Fatal(err)
	}
	if out := f.claim("carol", "tight", "r1", t0); out.Code != domain.CodeUnavailable {
		t.Fatalf("claim on an evicted campaign = %+v, want unavailable (fail closed)", out)
	}
	r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile)
	if err != nil || len(r.Fixed) != 1 || r.Fixed[0].Drift != "missing" || r.Fixed[0].Action != "rebuilt" {
		t.Fatalf("reconcile: %+v %v", r, err)
	}
	if cc, _ := f.cache.Campaign(ctx, "tight"); cc.Issued != 2 || cc.Remaining != 0 {
		t.Fatalf("rebuilt campaign: %+v, want issued 2 remaining 0", cc)
	}
	if out := f.claim("carol", "tight", "r2", t0); out.Code != domain.CodeSoldOut {
		t.Fatalf("claim after the rebuild = %+v, want sold_out", out)
	}
	if out := f.claim("alice", "tight", "r9", t0); out.Code != domain.CodeLimitReached {
		t.Fatalf("alice after the rebuild = %+v, want limit_reached", out)
	}
}

// Drift the version fence cannot heal is repaired in place: a cache counting fewer units than MySQL
// recorded, and a stock that differs at the same version.
func TestReconcileRepairsWhatTheFenceCannot(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("behind", true, func(c *domain.Campaign) { c.Stock = 2 })
	f.campaign("stock", true, func(c *domain.Campaign) { c.Stock = 7 })
	for _, u := range []string{"alice", "bob"} {
		out := f.claim(u, "behind", "r1", t0)
		if _, err := f.store.RecordClaims(ctx, []domain.Claim{out.Claim}); err != nil {
			t.Fatal(err)
		}
	}
	// The cache loses its count (a failover to a replica that missed the writes) and the grants
	// already left the stream; the other campaign's cached stock is wrong at the same version.
	if err := f.rdb.HSet(ctx, "bn:{c:behind}:camp", "issued", 0, "remaining", 2).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.Del(ctx, "bn:{c:behind}:grants").Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.HSet(ctx, "bn:{c:stock}:camp", "stock", 700, "remaining", 700).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, fx := range r.Fixed {
		got[fx.ID] = fx.Drift + "/" + fx.Action
	}
	if got["behind"] != "issued_behind/repaired" || got["stock"] != "stock_mismatch/repaired" {
		t.Fatalf("fixes %v", got)
	}
	if cc, _ := f.cache.Campaign(ctx, "behind"); cc.Issued != 2 || cc.Remaining != 0 {
		t.Fatalf("behind after repair: %+v", cc)
	}
	if cc, _ := f.cache.Campaign(ctx, "stock"); cc.Stock != 7 || cc.Remaining != 7 {
		t.Fatalf("stock after repair: %+v", cc)
	}
	if out := f.claim("carol", "behind", "r1", t0); out.Code != domain.CodeSoldOut {
		t.Fatalf("claim after repair = %+v, want sold_out", out)
	}
	if r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile); err != nil || len(r.Fixed) != 0 {
		t.Fatalf("second reconcile: %+v %v", r, err)
	}
}

// A user change whose message never reached the cache (dead-lettered while Redis was down) is
// republished by the reconciler; users it has checked are left alone on the next run.
func TestReconcileRepublishesUsersTheCacheIsBehindOn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.mq.OnChange = cachesync.New(f.store, f.cache).Apply
	f.user("synced", t0.Add(-time.Hour), 10)
	f.user("behind", t0.Add(-time.Hour), 0)
	// A credit committed to MySQL whose change message was lost.
	if _, _, err := f.store.CreditPoints(ctx, "behind", domain.PointsCredit{Delta: 50, RequestID: "lost"}); err != nil {
		t.Fatal(err)
	}
	r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile)
	if err != nil || r.Users != 2 || len(r.Fixed) != 1 || r.Fixed[0].ID != "behind" || r.Fixed[0].Action != "republished" {
		t.Fatalf("reconcile: %+v %v", r, err)
	}
	if u, _ := f.cache.User(ctx, "behind"); u.Balance != 50 {
		t.Fatalf("cached balance after the republish = %d, want 50", u.Balance)
	}
	if r, err := f.jobs(t0, timer.Config{}).Run(ctx, timer.JobReconcile); err != nil || len(r.Fixed) != 0 {
		t.Fatalf("second reconcile: %+v %v", r, err)
	}
}

// A scheduled grant the broker refuses is written to MySQL as the claim function writes a claim's, so
// losing Redis afterwards loses no grant.
func TestScheduledGrantsWrittenToMySQLWhenPublishingFails(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("g", true, func(c *domain.Campaign) { c.Mode, c.Stock, c.StartsAt = domain.ModeGrant, 10, t0 })
	for i := 0; i < 3; i++ {
		f.user(fmt.Sprintf("u%d", i), t0.Add(-time.Duration(10-i)*time.Hour), 0)
	}
	f.mq.Fail(errors.New("broker down"))
	r, err := f.jobs(t0.Add(time.Minute), timer.Config{}).Run(ctx, timer.JobScheduledGrants)
	if err != nil || r.Granted != 3 || r.Failed != 0 {
		t.Fatalf("run: %+v %v", r, err)
	}
	if n := f.count("SELECT COUNT(*) FROM claims WHERE campaign_id = 'g'"); n != 3 || f.count("SELECT issued FROM campaigns WHERE id = 'g'") != 3 {
		t.Fatalf("%d grants in MySQL, want 3", n)
	}
}

// The grant replay publishes what one scan found for a bounded time only, so a grant read from Redis
// before the cache was lost cannot reach the broker after a rebuild's drain has looked (ClaimWindow).
func TestGrantReplayStopsAfterItsWindow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.campaign("cmp_a", true, func(c *domain.Campaign) { c.Stock = 10 })
	for i := 0; i < 6; i++ {
		if out := f.claim(fmt.Sprintf("u%d", i), "cmp_a", "r1", t0); out.Code != "" {
			t.Fatalf("claim: %+v", out)
		}
	}
	f.mq.OnGrant = func(context.Context, domain.Claim) error {
		time.Sleep(1500 * time.Millisecond) // a slow broker
		return nil
	}
	start := time.Now()
	r, err := f.jobs(t0.Add(time.Minute), timer.Config{}).Run(ctx, timer.JobGrantReplay)
	if err != nil || r.Replayed < 1 || r.Replayed > 4 || r.Note == "" {
		t.Fatalf("replay: %+v %v", r, err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("the replay took %s", took)
	}
}
