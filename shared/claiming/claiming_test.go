package claiming_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/claiming"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq/mqtest"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/storetest"
)

func TestMain(m *testing.M) { services.Main(m) }

const secret = "claiming-test-secret-0123456789"

var t0 = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	store *mysqlstore.Store
	rdb   redis.UniversalClient
	cache *rediscache.Cache
	pub   *mqtest.Publisher
	api   *claiming.API
	clock atomic.Int64 // milliseconds after t0; every decision advances it by one

	verifier *auth.Verifier
	now      func() time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store := storetest.MySQL(t)
	cache, rdb := storetest.ReadyRedis(t)
	v, err := auth.NewVerifier(secret, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: store, rdb: rdb, cache: cache, pub: &mqtest.Publisher{}}
	now := func() time.Time { return t0.Add(time.Duration(f.clock.Add(1)) * time.Millisecond) }
	f.api = claiming.New(cache, f.pub, store, v, now, claiming.Config{})
	f.verifier, f.now = v, now
	return f
}

// failingStore is MySQL behind a link that fails: every ledger write and lookup errs while fail is set.
type failingStore struct {
	*mysqlstore.Store
	fail atomic.Bool
}

var errMySQLDown = fault.Retryable(errors.New("mysql: connection refused"))

func (s *failingStore) RecordClaims(ctx context.Context, claims []domain.Claim) (mysqlstore.RecordResult, error) {
	if s.fail.Load() {
		return mysqlstore.RecordResult{}, errMySQLDown
	}
	return s.Store.RecordClaims(ctx, claims)
}

func (s *failingStore) ExistingClaims(ctx context.Context, ids []string) (map[string]bool, error) {
	if s.fail.Load() {
		return nil, errMySQLDown
	}
	return s.Store.ExistingClaims(ctx, ids)
}

// withFailingStore rebuilds the API over a store that can be made to fail.
func (f *fixture) withFailingStore() *failingStore {
	fs := &failingStore{Store: f.store}
	f.api = claiming.New(f.cache, f.pub, fs, f.verifier, f.now, claiming.Config{})
	return fs
}

// campaign stores c in MySQL and applies it to the cache, as cachesync would.
func (f *fixture) campaign(id string, mutate func(*domain.Campaign)) domain.Campaign {
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
	if _, err := f.cache.ApplyCampaign(ctx, created, 0); err != nil {
		f.t.Fatal(err)
	}
	return created
}

// user stores a user with credits in MySQL and applies it to the cache, as cachesync would.
func (f *fixture) user(id string, credits int64) {
	f.t.Helper()
	ctx := context.Background()
	if _, _, err := f.store.PutUser(ctx, id, domain.UserPut{RegisteredAt: t0.Add(-time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.store.CreditPoints(ctx, id, domain.PointsCredit{Delta: credits, RequestID: "seed"}); err != nil {
		f.t.Fatal(err)
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

func (f *fixture) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.store.DB().QueryRow(q, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func token(t *testing.T, sub string, role auth.Role) string {
	t.Helper()
	tok, err := auth.Issue(secret, sub, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(tok, method, path, body string) answer {
	f.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, r)
	a := answer{code: w.Code, header: w.Header(), raw: w.Body.String()}
	if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
		f.t.Fatalf("%s %s: answer is not JSON: %q", method, path, a.raw)
	}
	return a
}

func (f *fixture) claim(tok, campaignID, requestID string) answer {
	f.t.Helper()
	b, _ := json.Marshal(map[string]string{"campaign_id": campaignID, "request_id": requestID})
	return f.do(tok, "POST", "/v1/claims", string(b))
}

func errCode(a answer) string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func claimOf(a answer) map[string]any {
	c, _ := a.body["claim"].(map[string]any)
	return c
}

func TestClaimThenReplayPublishesOnce(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", func(c *domain.Campaign) { c.Benefit = domain.Benefit{Type: domain.BenefitRedEnvelope, Amount: 888} })
	alice := token(t, "alice", auth.RoleUser)
	first := f.claim(alice, c.ID, "req-1")
	if first.code != http.StatusCreated {
		t.Fatalf("first: %d %s", first.code, first.raw)
	}
	cl := claimOf(first)
	if cl["id"] != domain.ClaimID("alice", "req-1") || cl["campaign_id"] != c.ID || cl["user_id"] != "alice" ||
		cl["cost_points"] != float64(0) || cl["granted_at"] != t0.Add(time.Millisecond).Format(time.RFC3339Nano) {
		t.Fatalf("claim: %s", first.raw)
	}
	if b, _ := cl["benefit"].(map[string]any); b["type"] != "red_envelope" || b["amount"] != float64(888) {
		t.Fatalf("benefit: %s", first.raw)
	}
	second := f.claim(alice, c.ID, "req-1")
	if second.code != http.StatusOK || second.raw != first.raw {
		t.Fatalf("replay: %d %s, first %s", second.code, second.raw, first.raw)
	}
	// The replay came before the ledger wrote the grant, so it was sent again (the ledger's insert is
	// keyed by claim id): a replay is answered only once its grant is known durable.
	pub := f.pub.Grants()
	if len(pub) != 2 || pub[0] != pub[1] || pub[0].ID != domain.ClaimID("alice", "req-1") || pub[0].UserID != "alice" || pub[0].RequestID != "req-1" {
		t.Fatalf("published %+v, want the grant twice", pub)
	}
	if _, err := f.store.RecordClaims(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	// Once MySQL has it, a replay is answered from there and sends nothing.
	if third := f.claim(alice, c.ID, "req-1"); third.code != http.StatusOK || third.raw != first.raw || len(f.pub.Grants()) != 2 {
		t.Fatalf("replay after the ledger: %d %s, %d publishes", third.code, third.raw, len(f.pub.Grants()))
	}
	cc, _ := f.cache.Campaign(context.Background(), c.ID)
	if cc.Issued != 1 || cc.Remaining != 99 {
		t.Fatalf("cache after a claim and its replay: %+v", cc)
	}
	// A new request of the same user hits the per-user limit and publishes nothing.
	if a := f.claim(alice, c.ID, "req-2"); a.code != 409 || errCode(a) != "limit_reached" {
		t.Fatalf("second request: %d %s", a.code, a.raw)
	}
	if n := len(f.pub.Grants()); n != 2 {
		t.Fatalf("%d publishes", n)
	}
}

// A grant the broker will not take is written to MySQL with the ledger's insert before the claim is
// acknowledged, points debit included, so losing Redis afterwards loses nothing the user was told.
func TestPublishFailureWritesTheGrantToMySQL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.campaign("cmp_a", func(c *domain.Campaign) { c.CostPoints = 30 })
	f.user("bob", 100)
	f.pub.Fail(errors.New("broker down"))
	bob := token(t, "bob", auth.RoleUser)
	a := f.claim(bob, c.ID, "r1")
	if a.code != http.StatusCreated {
		t.Fatalf("claim: %d %s", a.code, a.raw)
	}
	id := claimOf(a)["id"].(string)
	if f.count("SELECT COUNT(*) FROM claims WHERE id = ? AND user_id = 'bob' AND cost_points = 30", id) != 1 ||
		f.count("SELECT issued FROM campaigns WHERE id = ?", c.ID) != 1 ||
		f.count("SELECT points_debited FROM users WHERE id = 'bob'") != 30 ||
		f.count("SELECT COUNT(*) FROM points_entries WHERE user_id = 'bob' AND kind = 'debit' AND ref = ? AND amount = 30", id) != 1 {
		t.Fatal("the grant, its issued count or its debit is not in MySQL as the ledger writes them")
	}
	if n := len(f.pub.Grants()); n != 1 {
		t.Fatalf("%d publish attempts, want 1", n)
	}
	// Redis is lost: MySQL still has the claim the user was told about.
	if err := services.FlushAll(ctx, f.rdb); err != nil {
		t.Fatal(err)
	}
	l := f.do(bob, "GET", "/v1/claims", "")
	if list, _ := l.body["claims"].([]any); len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("bob's claims after Redis was lost: %s", l.raw)
	}
	// The broker's copy arriving later (the publish may have landed after all) is a no-op for the
	// ledger: nothing counted twice.
	res, err := f.store.RecordClaims(ctx, f.pub.Grants())
	if err != nil || res.Inserted != 0 || res.Duplicates != 1 {
		t.Fatalf("ledger on the duplicate: %+v %v", res, err)
	}
	if f.count("SELECT issued FROM campaigns WHERE id = ?", c.ID) != 1 || f.count("SELECT points_debited FROM users WHERE id = 'bob'") != 30 {
		t.Fatal("the duplicate was counted")
	}
}

// A publish that overstays its deadline is not waited for: the grant goes to MySQL in bounded time.
func TestSlowPublishIsBoundedAndFallsBackToMySQL(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", nil)
	release := make(chan struct{})
	defer close(release)
	f.pub.OnGrant = func(context.Context, domain.Claim) error {
		<-release // a send that ignores its context, as the RocketMQ client's retries were seen to
		return nil
	}
	f.api = claiming.New(f.cache, f.pub, f.store, f.verifier, f.now, claiming.Config{PublishTimeout: 300 * time.Millisecond})
	start := time.Now()
	a := f.claim(token(t, "bob", auth.RoleUser), c.ID, "r1")
	if took := time.Since(start); a.code != 201 || took > 2*time.Second {
		t.Fatalf("claim: %d after %s: %s", a.code, took, a.raw)
	}
	if f.count("SELECT COUNT(*) FROM claims WHERE id = ?", domain.ClaimID("bob", "r1")) != 1 {
		t.Fatal("the grant is not in MySQL")
	}
}

// When neither the broker nor MySQL takes the grant, the claim is not acknowledged: 503 with the
// outcome unknown. A retry with the same request_id answers 200 only once the grant is durable.
func TestGrantDurableNowhereIs503UntilARetryMakesItDurable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.campaign("cmp_a", nil)
	fs := f.withFailingStore()
	fs.fail.Store(true)
	f.pub.Fail(errors.New("broker down"))
	bob := token(t, "bob", auth.RoleUser)
	a := f.claim(bob, c.ID, "r1")
	if a.code != 503 || errCode(a) != "unavailable" || a.header.Get("Retry-After") == "" ||
		!strings.Contains(a.raw, "unknown") || !strings.Contains(a.raw, "request_id") {
		t.Fatalf("claim durable nowhere: %d %v %s", a.code, a.header, a.raw)
	}
	// A retry while both are still down is still not acknowledged.
	if r := f.claim(bob, c.ID, "r1"); r.code != 503 || errCode(r) != "unavailable" {
		t.Fatalf("replay durable nowhere: %d %s", r.code, r.raw)
	}
	if n := f.count("SELECT COUNT(*) FROM claims"); n != 0 {
		t.Fatalf("%d claims in MySQL", n)
	}
	// MySQL is back, the broker is not: the retry writes the grant to MySQL, then answers 200.
	fs.fail.Store(false)
	r := f.claim(bob, c.ID, "r1")
	if r.code != 200 || claimOf(r)["id"] != domain.ClaimID("bob", "r1") {
		t.Fatalf("replay once MySQL is back: %d %s", r.code, r.raw)
	}
	if f.count("SELECT COUNT(*) FROM claims WHERE id = ?", domain.ClaimID("bob", "r1")) != 1 || f.count("SELECT issued FROM campaigns WHERE id = ?", c.ID) != 1 {
		t.Fatal("the replayed grant is not in MySQL")
	}
	if cc, _ := f.cache.Campaign(ctx, c.ID); cc.Issued != 1 {
		t.Fatalf("cache: %+v: the retries must not issue again", cc)
	}
	// The broker back, MySQL down: a new claim is published and acknowledged without MySQL.
	fs.fail.Store(true)
	f.pub.Fail(nil)
	n := len(f.pub.Grants())
	if a := f.claim(token(t, "carol", auth.RoleUser), c.ID, "r1"); a.code != 201 || len(f.pub.Grants()) != n+1 {
		t.Fatalf("claim with the broker up: %d %s", a.code, a.raw)
	}
	// And a replay whose grant MySQL cannot confirm is published again before it is answered.
	if a := f.claim(bob, c.ID, "r1"); a.code != 200 || len(f.pub.Grants()) != n+2 || f.pub.Grants()[n+1].ID != domain.ClaimID("bob", "r1") {
		t.Fatalf("replay with MySQL down: %d %s", a.code, a.raw)
	}
}

func TestUserIDComesFromTokenOnly(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", nil)
	alice, bob := token(t, "alice", auth.RoleUser), token(t, "bob", auth.RoleUser)
	body := `{"campaign_id": "cmp_a", "request_id": "same", "user_id": "bob"}`
	if a := f.do(alice, "POST", "/v1/claims", body); a.code != 400 || errCode(a) != "invalid_request" || !strings.Contains(a.raw, "user_id") {
		t.Fatalf("user_id in body: %d %s", a.code, a.raw)
	}
	a, b := f.claim(alice, c.ID, "same"), f.claim(bob, c.ID, "same")
	if a.code != 201 || b.code != 201 {
		t.Fatalf("claims: %d %s / %d %s", a.code, a.raw, b.code, b.raw)
	}
	if claimOf(a)["user_id"] != "alice" || claimOf(b)["user_id"] != "bob" || claimOf(a)["id"] == claimOf(b)["id"] {
		t.Fatalf("claims: %s / %s", a.raw, b.raw)
	}
	// Each user's history holds only their own claim.
	if _, err := f.store.RecordClaims(context.Background(), f.pub.Grants()); err != nil {
		t.Fatal(err)
	}
	l := f.do(alice, "GET", "/v1/claims", "")
	list, _ := l.body["claims"].([]any)
	if l.code != 200 || len(list) != 1 || list[0].(map[string]any)["user_id"] != "alice" {
		t.Fatalf("alice's list: %d %s", l.code, l.raw)
	}
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", nil)
	forged, _ := auth.Issue("some-other-secret-0123456789", "alice", auth.RoleUser, time.Hour, time.Now())
	expired, _ := auth.Issue(secret, "alice", auth.RoleUser, time.Minute, time.Now().Add(-time.Hour))
	badSub, _ := auth.Issue(secret, "al ice", auth.RoleUser, time.Hour, time.Now())
	for _, tc := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"none", "", 401, "unauthenticated"},
		{"garbage", "xxx.yyy.zzz", 401, "unauthenticated"},
		{"forged", forged, 401, "unauthenticated"},
		{"expired", expired, 401, "unauthenticated"},
		{"malformed sub", badSub, 401, "unauthenticated"},
		{"operator", token(t, "ops", auth.RoleOperator), 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range []answer{f.claim(tc.token, c.ID, "r-"+tc.name), f.do(tc.token, "GET", "/v1/claims", "")} {
				if a.code != tc.status || errCode(a) != tc.code {
					t.Fatalf("want %d %s, got %d %s", tc.status, tc.code, a.code, a.raw)
				}
			}
		})
	}
	cc, _ := f.cache.Campaign(context.Background(), c.ID)
	if cc.Issued != 0 || len(f.pub.Grants()) != 0 {
		t.Fatalf("refused callers were issued units: %+v", cc)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	f.campaign("open", func(c *domain.Campaign) { c.Stock = 1 })
	f.campaign("grantonly", func(c *domain.Campaign) { c.Mode = domain.ModeGrant })
	f.campaign("later", func(c *domain.Campaign) { c.StartsAt = t0.Add(time.Hour); c.EndsAt = t0.Add(2 * time.Hour) })
	f.campaign("over", func(c *domain.Campaign) { c.StartsAt = t0.Add(-2 * time.Hour); c.EndsAt = t0.Add(-time.Hour) })
	f.campaign("paused", func(c *domain.Campaign) { c.Status = domain.StatusPaused })
	f.campaign("members", func(c *domain.Campaign) { c.Audience.Segment = domain.SegmentMembers })
	f.campaign("costly", func(c *domain.Campaign) { c.CostPoints = 10 })
	alice, bob := token(t, "alice", auth.RoleUser), token(t, "bob", auth.RoleUser)
	if a := f.claim(alice, "open", "r0"); a.code != 201 {
		t.Fatalf("first unit: %d %s", a.code, a.raw)
	}
	for _, tc := range []struct {
		campaign, request string
		status            int
		code              string
	}{
		{"nope", "r1", 404, "campaign_not_found"},
		{"grantonly", "r2", 409, "not_claimable"},
		{"later", "r3", 409, "not_started"},
		{"over", "r4", 409, "ended"},
		{"paused", "r5", 409, "paused"},
		{"members", "r6", 403, "not_eligible"},
		{"open", "r7", 409, "sold_out"},
		{"costly", "r8", 409, "insufficient_points"},
		{"bad id!", "r9", 400, "invalid_request"},
		{"open", "grant:open", 400, "invalid_request"},
		{"open", "", 400, "invalid_request"},
	} {
		a := f.claim(bob, tc.campaign, tc.request)
		if a.code != tc.status || errCode(a) != tc.code {
			t.Errorf("%s/%s: want %d %s, got %d %s", tc.campaign, tc.request, tc.status, tc.code, a.code, a.raw)
		}
	}
	if n := len(f.pub.Grants()); n != 1 {
		t.Fatalf("%d grants published, want only the first unit", n)
	}
	if a := f.do(bob, "POST", "/v1/claims", `{"campaign_id": "open", "request_id": "x"`+strings.Repeat(" ", 64<<10)+`}`); a.code != 413 || errCode(a) != "payload_too_large" {
		t.Fatalf("large body: %d %s", a.code, a.raw)
	}
}

func TestCacheNotReadyIs503WithRetryAfter(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", nil)
	if err := f.cache.ClearReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := f.claim(token(t, "alice", auth.RoleUser), c.ID, "r1")
	if a.code != 503 || errCode(a) != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("not ready: %d %v %s", a.code, a.header, a.raw)
	}
	if cc, _ := f.cache.Campaign(context.Background(), c.ID); cc.Issued != 0 || len(f.pub.Grants()) != 0 {
		t.Fatalf("a unit was issued while the cache was not ready: %+v", cc)
	}
	// The first claim to find the cache lost woke the rebuild; the rush behind it does not send a
	// wake each (the fixture's clock moves a millisecond per decision, inside WakeEvery).
	for i := range 5 {
		f.claim(token(t, "bob", auth.RoleUser), c.ID, fmt.Sprint("b", i))
	}
	if n := f.pub.RebuildWakes(); n != 1 {
		t.Fatalf("%d rebuild wakes for 6 claims on a lost cache, want 1", n)
	}
	// A refusal on a ready cache wakes nothing.
	if err := f.cache.MarkReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.pub.Forget()
	f.claim(token(t, "carol", auth.RoleUser), "cmp_missing", "r1")
	if n := f.pub.RebuildWakes(); n != 0 {
		t.Fatalf("a refusal on a ready cache woke the rebuild %d times", n)
	}
}

func TestListClaimsPagesWithCursor(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", func(c *domain.Campaign) { c.Stock = 1000; c.PerUserLimit = 1000 })
	alice := token(t, "alice", auth.RoleUser)
	const n = 105
	for i := 0; i < n; i++ {
		if a := f.claim(alice, c.ID, fmt.Sprintf("req-%03d", i)); a.code != 201 {
			t.Fatalf("claim %d: %d %s", i, a.code, a.raw)
		}
	}
	// Another user's claims must not show.
	f.claim(token(t, "bob", auth.RoleUser), c.ID, "req-000")
	if _, err := f.store.RecordClaims(context.Background(), f.pub.Grants()); err != nil {
		t.Fatal(err)
	}
	first := f.do(alice, "GET", "/v1/claims", "")
	page1, _ := first.body["claims"].([]any)
	next, _ := first.body["next_cursor"].(string)
	if first.code != 200 || len(page1) != 100 || next == "" {
		t.Fatalf("first page: %d, %d claims, cursor %q", first.code, len(page1), next)
	}
	second := f.do(alice, "GET", "/v1/claims?cursor="+url.QueryEscape(next), "")
	page2, _ := second.body["claims"].([]any)
	if second.code != 200 || len(page2) != n-100 || second.body["next_cursor"] != nil {
		t.Fatalf("second page: %d %d %v", second.code, len(page2), second.body["next_cursor"])
	}
	// Newest first: the requests were decided in order, each a millisecond later than the last.
	all := append(page1, page2...)
	for i, e := range all {
		m := e.(map[string]any)
		want := domain.ClaimID("alice", fmt.Sprintf("req-%03d", n-1-i))
		if m["id"] != want || m["user_id"] != "alice" {
			t.Fatalf("position %d: %v, want %s", i, m, want)
		}
	}
	if a := f.do(alice, "GET", "/v1/claims?cursor=bogus!", ""); a.code != 400 || errCode(a) != "invalid_request" {
		t.Fatalf("bad cursor: %d %s", a.code, a.raw)
	}
	empty := f.do(token(t, "carol", auth.RoleUser), "GET", "/v1/claims", "")
	if list, ok := empty.body["claims"].([]any); empty.code != 200 || !ok || len(list) != 0 {
		t.Fatalf("no claims must be an empty array: %s", empty.raw)
	}
}
