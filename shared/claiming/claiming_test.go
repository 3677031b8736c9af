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
	"github.com/benefit-issuance/benefits/shared/mq/mqtest"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

func TestMain(m *testing.M) { services.Main(m) }

const secret = "claiming-test-secret-0123456789"

var t0 = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	store *mysqlstore.Store
	rdb   *redis.Client
	cache *rediscache.Cache
	pub   *mqtest.Publisher
	api   *claiming.API
	clock atomic.Int64 // milliseconds after t0; every decision advances it by one
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := services.Env(t)
	ctx := context.Background()
	store, err := mysqlstore.Open(ctx, env.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rdb := env.Redis(t)
	cache := rediscache.New(rdb)
	if err := cache.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(secret, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: store, rdb: rdb, cache: cache, pub: &mqtest.Publisher{}}
	now := func() time.Time { return t0.Add(time.Duration(f.clock.Add(1)) * time.Millisecond) }
	f.api = claiming.New(cache, f.pub, store, v, now, claiming.Config{})
	return f
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
	pub := f.pub.Grants()
	if len(pub) != 1 || pub[0].ID != domain.ClaimID("alice", "req-1") || pub[0].UserID != "alice" || pub[0].RequestID != "req-1" {
		t.Fatalf("published %+v, want the grant exactly once", pub)
	}
	cc, _ := f.cache.Campaign(context.Background(), c.ID)
	if cc.Issued != 1 || cc.Remaining != 99 {
		t.Fatalf("cache after a claim and its replay: %+v", cc)
	}
	// A new request of the same user hits the per-user limit and publishes nothing.
	if a := f.claim(alice, c.ID, "req-2"); a.code != 409 || errCode(a) != "limit_reached" {
		t.Fatalf("second request: %d %s", a.code, a.raw)
	}
	if n := len(f.pub.Grants()); n != 1 {
		t.Fatalf("%d publishes", n)
	}
}

func TestPublishFailureStillGrants(t *testing.T) {
	f := newFixture(t)
	c := f.campaign("cmp_a", nil)
	f.pub.Fail(errors.New("broker down"))
	bob := token(t, "bob", auth.RoleUser)
	a := f.claim(bob, c.ID, "r1")
	if a.code != http.StatusCreated {
		t.Fatalf("claim: %d %s", a.code, a.raw)
	}
	id := claimOf(a)["id"]
	stream, err := f.cache.ReadGrants(context.Background(), c.ID, "0", 10)
	if err != nil || len(stream) != 1 || stream[0].Claim.ID != id || stream[0].Claim.UserID != "bob" {
		t.Fatalf("grant stream: %+v %v", stream, err)
	}
	if r := f.claim(bob, c.ID, "r1"); r.code != 200 || claimOf(r)["id"] != id {
		t.Fatalf("replay: %d %s", r.code, r.raw)
	}
	if n := len(f.pub.Grants()); n != 1 {
		t.Fatalf("%d publish attempts, want 1 (replays leave it to the timer)", n)
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
