package rules_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/cachesync"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mq/mqtest"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/rules"
	"github.com/benefit-issuance/benefits/shared/storetest"
)

func TestMain(m *testing.M) { services.Main(m) }

const secret = "rules-test-secret-0123456789"

type fixture struct {
	t     *testing.T
	store *mysqlstore.Store
	cache *rediscache.Cache
	pub   *mqtest.Publisher
	api   *rules.API
	token string
	wait  time.Duration
}

// newFixture builds the API on a fresh database and Redis DB. syncing decides whether published changes
// reach the cache; wait is the bounded cache wait.
func newFixture(t *testing.T, syncing bool, wait time.Duration) *fixture {
	t.Helper()
	store := storetest.MySQL(t)
	// A deployment's cache is trusted once the first rebuild marked it ready; until then cache sync
	// leaves it to the rebuild.
	cache, _ := storetest.ReadyRedis(t)
	pub := &mqtest.Publisher{}
	if syncing {
		pub.OnChange = cachesync.New(store, cache).Apply
	}
	return newFixtureWith(t, store, cache, pub, wait)
}

// newFixtureWith builds the API on the given store, cache and publisher, with an operator's token.
func newFixtureWith(t *testing.T, store *mysqlstore.Store, cache *rediscache.Cache, pub *mqtest.Publisher, wait time.Duration) *fixture {
	t.Helper()
	v, err := auth.NewVerifier(secret, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(secret, "ops-1", auth.RoleOperator, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	api := rules.New(store, cache, pub, v, rand.Reader, rules.Config{SyncWait: wait, PollInterval: 5 * time.Millisecond})
	return &fixture{t: t, store: store, cache: cache, pub: pub, api: api, token: tok, wait: wait}
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(method, path, body string, hdr ...string) answer {
	f.t.Helper()
	return f.doAs(f.token, method, path, body, hdr...)
}

func (f *fixture) doAs(token, method, path, body string, hdr ...string) answer {
	f.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, r)
	a := answer{code: w.Code, header: w.Header(), raw: w.Body.String()}
	if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
		f.t.Fatalf("%s %s: answer is not JSON: %q", method, path, a.raw)
	}
	return a
}

// get walks a JSON path of object keys.
func get(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = obj[p]
	}
	return cur
}

func num(m map[string]any, path ...string) int64 {
	f, _ := get(m, path...).(float64)
	return int64(f)
}

func (a answer) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if a.code != status || get(a.body, "error", "code") != code {
		t.Fatalf("want %d %s, got %d %s", status, code, a.code, a.raw)
	}
}

func (f *fixture) count(query string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.store.DB().QueryRow(query, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

const campaignBody = `{"name": "New users: 5 yuan off", "benefit": {"type": "coupon", "amount": 500},
	"audience": {"segment": "all"}, "mode": "claim", "starts_at": "2026-11-25T10:00:00+08:00",
	"ends_at": "2026-11-26T00:00:00+08:00", "stock": 100, "per_user_limit": 1}`

func (f *fixture) create() (string, answer) {
	f.t.Helper()
	a := f.do("POST", "/v1/campaigns", campaignBody)
	if a.code != http.StatusCreated {
		f.t.Fatalf("create: %d %s", a.code, a.raw)
	}
	id, _ := get(a.body, "campaign", "id").(string)
	return id, a
}

func TestCreateCampaignPublishesAndMarksOutboxSent(t *testing.T) {
	f := newFixture(t, true, time.Second)
	id, a := f.create()
	if !strings.HasPrefix(id, "cmp_") {
		t.Fatalf("id %q", id)
	}
	if v := num(a.body, "campaign", "version"); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	if a.header.Get("ETag") != `"1"` || a.header.Get("Location") != "/v1/campaigns/"+id {
		t.Fatalf("headers: %v", a.header)
	}
	if got := get(a.body, "campaign", "starts_at"); got != "2026-11-25T02:00:00Z" {
		t.Fatalf("starts_at %v, want UTC", got)
	}
	if get(a.body, "cache", "in_sync") != true || num(a.body, "cache", "version") != 1 ||
		num(a.body, "cache", "remaining") != 100 || num(a.body, "cache", "issued") != 0 {
		t.Fatalf("cache: %v", a.body["cache"])
	}
	evs := f.pub.Changes()
	if len(evs) != 1 || evs[0] != (mq.ChangeEvent{Entity: mq.EntityCampaign, ID: id, Version: 1}) {
		t.Fatalf("published %+v", evs)
	}
	if n := f.count("SELECT COUNT(*) FROM outbox WHERE entity = 'campaign' AND entity_id = ? AND version = 1 AND sent_at IS NOT NULL", id); n != 1 {
		t.Fatalf("%d sent outbox rows, want 1", n)
	}
	if n := f.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"); n != 0 {
		t.Fatalf("%d unsent outbox rows", n)
	}
}

func TestCreateWithPublishFailureLeavesOutboxForRelay(t *testing.T) {
	f := newFixture(t, true, 200*time.Millisecond)
	f.pub.Fail(errors.New("broker down"))
	start := time.Now()
	id, a := f.create()
	elapsed := time.Since(start)
	if num(a.body, "campaign", "version") != 1 {
		t.Fatalf("answer: %s", a.raw)
	}
	if get(a.body, "cache", "in_sync") != false {
		t.Fatalf("nothing reached the cache, yet in_sync: %s", a.raw)
	}
	if elapsed > f.wait+time.Second {
		t.Fatalf("answered after %s; the wait is bounded by %s", elapsed, f.wait)
	}
	if len(f.pub.Changes()) != 1 {
		t.Fatalf("publish attempts: %+v", f.pub.Changes())
	}
	pending, err := f.store.PendingOutbox(context.Background(), -time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].EntityID != id || pending[0].Version != 1 || pending[0].Entity != "campaign" {
		t.Fatalf("pending outbox: %+v", pending)
	}
}

func TestGetAndListCampaigns(t *testing.T) {
	f := newFixture(t, true, time.Second)
	id, created := f.create()
	a := f.do("GET", "/v1/campaigns/"+id, "")
	if a.code != 200 || a.header.Get("ETag") != `"1"` {
		t.Fatalf("get: %d %v %s", a.code, a.header, a.raw)
	}
	cj, _ := json.Marshal(a.body["campaign"])
	wj, _ := json.Marshal(created.body["campaign"])
	if string(cj) != string(wj) {
		t.Fatalf("get %s, created %s", cj, wj)
	}
	if get(a.body, "cache", "in_sync") != true {
		t.Fatalf("cache: %s", a.raw)
	}
	id2, _ := f.create()
	l := f.do("GET", "/v1/campaigns", "")
	list, _ := l.body["campaigns"].([]any)
	if l.code != 200 || len(list) != 2 {
		t.Fatalf("list: %d %s", l.code, l.raw)
	}
	seen := map[any]bool{}
	for _, e := range list {
		m, _ := e.(map[string]any)
		seen[get(m, "campaign", "id")] = true
		if get(m, "cache", "in_sync") != true {
			t.Fatalf("list entry: %v", m)
		}
	}
	if !seen[id] || !seen[id2] {
		t.Fatalf("list misses a campaign: %s", l.raw)
	}
	f.do("GET", "/v1/campaigns/cmp_nope", "").wantError(t, 404, "campaign_not_found")
	f.do("GET", "/v1/campaigns/bad%20id", "").wantError(t, 400, "invalid_request")
}

func TestPatchIfMatch(t *testing.T) {
	f := newFixture(t, true, time.Second)
	id, _ := f.create()
	path := "/v1/campaigns/" + id
	// Each accepted form bumps the version by one.
	for i, ifMatch := range []string{`1`, `"2"`, `W/"3"`, ` 4 `} {
		stock := 90 - i
		a := f.do("PATCH", path, `{"stock": `+itoa(stock)+`}`, "If-Match", ifMatch)
		want := int64(i + 2)
		if a.code != 200 || num(a.body, "campaign", "version") != want || a.header.Get("ETag") != `"`+itoa(int(want))+`"` {
			t.Fatalf("If-Match %s: %d %v %s", ifMatch, a.code, a.header, a.raw)
		}
		if num(a.body, "campaign", "stock") != int64(stock) || num(a.body, "cache", "remaining") != int64(stock) ||
			num(a.body, "cache", "version") != want || get(a.body, "cache", "in_sync") != true {
			t.Fatalf("If-Match %s: %s", ifMatch, a.raw)
		}
	}
	rec, err := f.store.Campaign(context.Background(), id)
	if err != nil || rec.Campaign.Version != 5 || rec.Campaign.Stock != 87 {
		t.Fatalf("stored: %+v %v", rec.Campaign, err)
	}
	outboxBefore := f.count("SELECT COUNT(*) FROM outbox")
	for _, tc := range []struct {
		name, body, ifMatch string
		status              int
		code, field         string
	}{
		{"stale", `{"stock": 1}`, `"4"`, 412, "version_mismatch", ""},
		{"future", `{"stock": 1}`, `9`, 412, "version_mismatch", ""},
		{"missing", `{"stock": 1}`, "", 428, "precondition_required", ""},
		{"garbage", `{"stock": 1}`, `abc`, 400, "invalid_request", "If-Match"},
		{"zero", `{"stock": 1}`, `0`, 400, "invalid_request", "If-Match"},
		{"mode fixed", `{"mode": "grant"}`, `5`, 400, "invalid_request", "mode"},
		{"negative stock", `{"stock": -1}`, `5`, 400, "invalid_request", "stock"},
		{"per_user_limit 0", `{"per_user_limit": 0}`, `5`, 400, "invalid_request", "per_user_limit"},
		{"version read-only", `{"version": 6}`, `5`, 400, "invalid_request", "version"},
		{"unknown field", `{"colour": "red"}`, `5`, 400, "invalid_request", "colour"},
		{"empty patch", `{}`, `5`, 400, "invalid_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a answer
			if tc.ifMatch == "" {
				a = f.do("PATCH", path, tc.body)
			} else {
				a = f.do("PATCH", path, tc.body, "If-Match", tc.ifMatch)
			}
			a.wantError(t, tc.status, tc.code)
			if msg, _ := get(a.body, "error", "message").(string); !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q does not name %s", msg, tc.field)
			}
		})
	}
	if n := f.count("SELECT COUNT(*) FROM outbox"); n != outboxBefore {
		t.Fatalf("refused patches wrote %d outbox rows", n-outboxBefore)
	}
	if rec, _ := f.store.Campaign(context.Background(), id); rec.Campaign.Version != 5 {
		t.Fatalf("refused patches moved the version to %d", rec.Campaign.Version)
	}
	f.do("PATCH", "/v1/campaigns/cmp_nope", `{"stock": 1}`, "If-Match", "1").wantError(t, 404, "campaign_not_found")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestInSyncFalseWithinBoundedWaitWhenCacheNeverApplies(t *testing.T) {
	f := newFixture(t, false, 150*time.Millisecond)
	start := time.Now()
	id, a := f.create()
	elapsed := time.Since(start)
	if get(a.body, "cache", "in_sync") != false || num(a.body, "cache", "version") != 0 {
		t.Fatalf("create: %s", a.raw)
	}
	if elapsed < f.wait || elapsed > f.wait+time.Second {
		t.Fatalf("create answered after %s, want about %s", elapsed, f.wait)
	}
	// The publish succeeded, so the row is sent even though the cache never applied it.
	if n := f.count("SELECT COUNT(*) FROM outbox WHERE entity_id = ? AND sent_at IS NOT NULL", id); n != 1 {
		t.Fatalf("sent rows: %d", n)
	}
	start = time.Now()
	p := f.do("PATCH", "/v1/campaigns/"+id, `{"status": "paused"}`, "If-Match", "1")
	elapsed = time.Since(start)
	if p.code != 200 || get(p.body, "cache", "in_sync") != false || num(p.body, "campaign", "version") != 2 {
		t.Fatalf("patch: %d %s", p.code, p.raw)
	}
	if elapsed < f.wait || elapsed > f.wait+time.Second {
		t.Fatalf("patch answered after %s", elapsed)
	}
	u := f.do("PUT", "/v1/users/u1", `{"registered_at": "2026-01-01T00:00:00Z"}`)
	if u.code != 200 || get(u.body, "cache", "in_sync") != false {
		t.Fatalf("put user: %d %s", u.code, u.raw)
	}
	g := f.do("GET", "/v1/campaigns/"+id, "")
	if get(g.body, "cache", "in_sync") != false {
		t.Fatalf("get: %s", g.raw)
	}
}

func TestCacheBehindIsNotInSync(t *testing.T) {
	// A syncing publisher brings the cache to version 1; then a PATCH whose publish fails leaves the
	// cache a version behind: in_sync must be false although the campaign is cached.
	f := newFixture(t, true, 100*time.Millisecond)
	id, _ := f.create()
	f.pub.Fail(errors.New("broker down"))
	p := f.do("PATCH", "/v1/campaigns/"+id, `{"stock": 5}`, "If-Match", "1")
	if p.code != 200 || get(p.body, "cache", "in_sync") != false || num(p.body, "cache", "version") != 1 || num(p.body, "cache", "remaining") != 100 {
		t.Fatalf("patch: %d %s", p.code, p.raw)
	}
}

func TestUsersPutGet(t *testing.T) {
	f := newFixture(t, true, time.Second)
	a := f.do("PUT", "/v1/users/alice", `{"registered_at": "2026-03-01T08:00:00+08:00", "member": true}`)
	if a.code != 200 || get(a.body, "user", "id") != "alice" || get(a.body, "user", "registered_at") != "2026-03-01T00:00:00Z" ||
		get(a.body, "user", "member") != true || num(a.body, "user", "points") != 0 || num(a.body, "user", "version") != 1 {
		t.Fatalf("put: %d %s", a.code, a.raw)
	}
	if get(a.body, "cache", "in_sync") != true || num(a.body, "cache", "version") != 1 {
		t.Fatalf("put cache: %s", a.raw)
	}
	a = f.do("PUT", "/v1/users/alice", `{"registered_at": "2026-03-02T00:00:00Z"}`)
	if a.code != 200 || num(a.body, "user", "version") != 2 || get(a.body, "user", "member") != false {
		t.Fatalf("second put: %d %s", a.code, a.raw)
	}
	g := f.do("GET", "/v1/users/alice", "")
	if g.code != 200 || num(g.body, "user", "version") != 2 || get(g.body, "user", "registered_at") != "2026-03-02T00:00:00Z" ||
		get(g.body, "cache", "in_sync") != true {
		t.Fatalf("get: %d %s", g.code, g.raw)
	}
	evs := f.pub.Changes()
	if len(evs) != 2 || evs[1] != (mq.ChangeEvent{Entity: mq.EntityUser, ID: "alice", Version: 2}) {
		t.Fatalf("published: %+v", evs)
	}
	f.do("GET", "/v1/users/bob", "").wantError(t, 404, "user_not_found")
	f.do("POST", "/v1/users/bob/points", `{"delta": 5, "request_id": "r"}`).wantError(t, 404, "user_not_found")
	f.do("PUT", "/v1/users/bad!id", `{"registered_at": "2026-03-02T00:00:00Z"}`).wantError(t, 400, "invalid_request")
}

func TestPointsCreditIdempotentByRequestID(t *testing.T) {
	f := newFixture(t, true, time.Second)
	f.do("PUT", "/v1/users/alice", `{"registered_at": "2026-03-01T00:00:00Z"}`)
	credit := func(body string, points, version int64) {
		t.Helper()
		a := f.do("POST", "/v1/users/alice/points", body)
		if a.code != 200 || num(a.body, "user", "points") != points || num(a.body, "user", "version") != version ||
			get(a.body, "cache", "in_sync") != true || num(a.body, "cache", "points") != points {
			t.Fatalf("credit %s: %d %s", body, a.code, a.raw)
		}
	}
	credit(`{"delta": 50, "request_id": "credit-1"}`, 50, 2)
	credit(`{"delta": 50, "request_id": "credit-1"}`, 50, 2)
	credit(`{"delta": 999, "request_id": "credit-1"}`, 50, 2) // same id, other delta: still nothing
	credit(`{"delta": 25, "request_id": "credit-2"}`, 75, 3)
	if n := f.count("SELECT COUNT(*) FROM points_entries WHERE user_id = 'alice' AND kind = 'credit'"); n != 2 {
		t.Fatalf("%d credit entries, want 2", n)
	}
	if n := f.count("SELECT COUNT(*) FROM outbox WHERE entity = 'user'"); n != 3 {
		t.Fatalf("%d user outbox rows, want 3 (put and two credits)", n)
	}
	if n := len(f.pub.Changes()); n != 3 {
		t.Fatalf("%d events published, want 3", n)
	}
	rec, err := f.store.User(context.Background(), "alice")
	if err != nil || rec.Credited != 75 || rec.User.Points != 75 {
		t.Fatalf("stored: %+v %v", rec, err)
	}
	cu, err := f.cache.User(context.Background(), "alice")
	if err != nil || cu.Balance != 75 || cu.Version != 3 {
		t.Fatalf("cached: %+v %v", cu, err)
	}
}

func TestInvalidBodiesNameTheField(t *testing.T) {
	f := newFixture(t, true, time.Second)
	f.do("PUT", "/v1/users/alice", `{"registered_at": "2026-03-01T00:00:00Z"}`)
	outboxBefore := f.count("SELECT COUNT(*) FROM outbox")
	replace := func(old, new string) string { return strings.Replace(campaignBody, old, new, 1) }
	for _, tc := range []struct {
		name, method, path, body, field string
	}{
		{"missing name", "POST", "/v1/campaigns", replace(`"name": "New users: 5 yuan off", `, ""), "name"},
		{"negative stock", "POST", "/v1/campaigns", replace(`"stock": 100`, `"stock": -1`), "stock"},
		{"per_user_limit 0", "POST", "/v1/campaigns", replace(`"per_user_limit": 1`, `"per_user_limit": 0`), "per_user_limit"},
		{"bad benefit type", "POST", "/v1/campaigns", replace(`"coupon"`, `"cash"`), "benefit.type"},
		{"bad starts_at", "POST", "/v1/campaigns", replace(`2026-11-25T10:00:00+08:00`, `tomorrow`), "starts_at"},
		{"ends before start", "POST", "/v1/campaigns", replace(`2026-11-26T00:00:00+08:00`, `2026-11-24T00:00:00+08:00`), "ends_at"},
		{"new_user_days with all", "POST", "/v1/campaigns", replace(`{"segment": "all"}`, `{"segment": "all", "new_user_days": 3}`), "audience.new_user_days"},
		{"new_users without days", "POST", "/v1/campaigns", replace(`{"segment": "all"}`, `{"segment": "new_users"}`), "audience.new_user_days"},
		{"bad mode", "POST", "/v1/campaigns", replace(`"mode": "claim"`, `"mode": "lottery"`), "mode"},
		{"id is read-only", "POST", "/v1/campaigns", replace(`{"name"`, `{"id": "cmp_x", "name"`), "id"},
		{"version is read-only", "POST", "/v1/campaigns", replace(`{"name"`, `{"version": 1, "name"`), "version"},
		{"unknown field", "POST", "/v1/campaigns", replace(`{"name"`, `{"colour": "red", "name"`), "colour"},
		{"stock not a number", "POST", "/v1/campaigns", replace(`"stock": 100`, `"stock": "many"`), "stock"},
		{"trailing data", "POST", "/v1/campaigns", campaignBody + ` {}`, ""},
		{"not an object", "POST", "/v1/campaigns", `[1]`, ""},
		{"user without registered_at", "PUT", "/v1/users/bob", `{"member": true}`, "registered_at"},
		{"user with points", "PUT", "/v1/users/bob", `{"registered_at": "2026-03-01T00:00:00Z", "points": 5}`, "points"},
		{"user bad registered_at", "PUT", "/v1/users/bob", `{"registered_at": "yesterday"}`, "registered_at"},
		{"zero delta", "POST", "/v1/users/alice/points", `{"delta": 0, "request_id": "r"}`, "delta"},
		{"negative delta", "POST", "/v1/users/alice/points", `{"delta": -5, "request_id": "r"}`, "delta"},
		{"no request_id", "POST", "/v1/users/alice/points", `{"delta": 5}`, "request_id"},
		{"empty request_id", "POST", "/v1/users/alice/points", `{"delta": 5, "request_id": ""}`, "request_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(tc.method, tc.path, tc.body)
			a.wantError(t, 400, "invalid_request")
			if msg, _ := get(a.body, "error", "message").(string); !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q does not name %s", msg, tc.field)
			}
		})
	}
	if n := f.count("SELECT COUNT(*) FROM outbox"); n != outboxBefore {
		t.Fatalf("refused writes left %d outbox rows", n-outboxBefore)
	}
	if n := f.count("SELECT COUNT(*) FROM campaigns"); n != 0 {
		t.Fatalf("refused creates stored %d campaigns", n)
	}
}

func TestBodiesOver64KiBAre413(t *testing.T) {
	f := newFixture(t, true, time.Second)
	id, _ := f.create()
	f.do("PUT", "/v1/users/alice", `{"registered_at": "2026-03-01T00:00:00Z"}`)
	// Valid JSON padded with whitespace past the limit: only the size is wrong.
	pad := func(body string) string { return body[:len(body)-1] + strings.Repeat(" ", 64<<10) + "}" }
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/campaigns", pad(campaignBody)},
		{"PATCH", "/v1/campaigns/" + id, pad(`{"stock": 1}`)},
		{"PUT", "/v1/users/alice", pad(`{"registered_at": "2026-03-01T00:00:00Z"}`)},
		{"POST", "/v1/users/alice/points", pad(`{"delta": 5, "request_id": "big"}`)},
	} {
		f.do(tc.method, tc.path, tc.body, "If-Match", "1").wantError(t, 413, "payload_too_large")
	}
	// Exactly 64 KiB is still accepted.
	body := `{"delta": 5, "request_id": "edge"}`
	body = body[:len(body)-1] + strings.Repeat(" ", (64<<10)-len(body)) + "}"
	if len(body) != 64<<10 {
		t.Fatalf("len %d", len(body))
	}
	if a := f.do("POST", "/v1/users/alice/points", body); a.code != 200 || num(a.body, "user", "points") != 5 {
		t.Fatalf("64 KiB body: %d %s", a.code, a.raw)
	}
	if rec, _ := f.store.Campaign(context.Background(), id); rec.Campaign.Version != 1 {
		t.Fatalf("oversized patch applied: version %d", rec.Campaign.Version)
	}
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t, true, time.Second)
	userTok, _ := auth.Issue(secret, "alice", auth.RoleUser, time.Hour, time.Now())
	forged, _ := auth.Issue("another-secret-0123456789", "ops-1", auth.RoleOperator, time.Hour, time.Now())
	expired, _ := auth.Issue(secret, "ops-1", auth.RoleOperator, time.Hour, time.Now().Add(-2*time.Hour))
	badSub, _ := auth.Issue(secret, "ops 1", auth.RoleOperator, time.Hour, time.Now())
	for _, tc := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"none", "", 401, "unauthenticated"},
		{"garbage", "not-a-jwt", 401, "unauthenticated"},
		{"forged", forged, 401, "unauthenticated"},
		{"expired", expired, 401, "unauthenticated"},
		{"bad sub", badSub, 401, "unauthenticated"},
		{"user role", userTok, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.doAs(tc.token, "POST", "/v1/campaigns", campaignBody).wantError(t, tc.status, tc.code)
			f.doAs(tc.token, "GET", "/v1/campaigns", "").wantError(t, tc.status, tc.code)
			f.doAs(tc.token, "PUT", "/v1/users/alice", `{"registered_at": "2026-03-01T00:00:00Z"}`).wantError(t, tc.status, tc.code)
		})
	}
	if n := f.count("SELECT COUNT(*) FROM campaigns") + f.count("SELECT COUNT(*) FROM users"); n != 0 {
		t.Fatalf("unauthorised writes stored %d rows", n)
	}
}

// A grant campaign's writes each schedule a delay message for its starts_at, so the timer grants on
// time instead of at its next minute; a claim campaign schedules none.
func TestGrantCampaignWritesScheduleTheirStart(t *testing.T) {
	f := newFixture(t, true, time.Second)
	starts := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	body := fmt.Sprintf(`{"name": "grant", "benefit": {"type": "coupon", "amount": 500}, "audience": {"segment": "all"},
		"mode": "grant", "starts_at": %q, "ends_at": %q, "stock": 3, "per_user_limit": 1}`,
		starts.Format(time.RFC3339), starts.Add(time.Hour).Format(time.RFC3339))
	a := f.do("POST", "/v1/campaigns", body)
	if a.code != http.StatusCreated {
		t.Fatalf("create: %d %s", a.code, a.raw)
	}
	id, _ := get(a.body, "campaign", "id").(string)
	later := starts.Add(30 * time.Minute)
	if a := f.do("PATCH", "/v1/campaigns/"+id, fmt.Sprintf(`{"starts_at": %q}`, later.Format(time.RFC3339)), "If-Match", "1"); a.code != http.StatusOK {
		t.Fatalf("patch: %d %s", a.code, a.raw)
	}
	got := f.pub.GrantStarts()
	if len(got) != 2 {
		t.Fatalf("grant starts %+v, want one per write", got)
	}
	for i, want := range []struct {
		version int64
		at      time.Time
	}{{1, starts}, {2, later}} {
		if got[i].CampaignID != id || got[i].Version != want.version || !got[i].DeliverAt.Equal(want.at) {
			t.Errorf("grant start %d = %+v, want version %d at %v", i, got[i], want.version, want.at)
		}
	}
	// Paused, it will not start, so nothing is scheduled; a claim campaign never schedules one.
	if a := f.do("PATCH", "/v1/campaigns/"+id, `{"status": "paused"}`, "If-Match", "2"); a.code != http.StatusOK {
		t.Fatalf("pause: %d %s", a.code, a.raw)
	}
	claim := strings.Replace(body, `"mode": "grant"`, `"mode": "claim"`, 1)
	if a := f.do("POST", "/v1/campaigns", claim); a.code != http.StatusCreated {
		t.Fatalf("create claim campaign: %d %s", a.code, a.raw)
	}
	if n := len(f.pub.GrantStarts()); n != 2 {
		t.Fatalf("%d grant starts after pausing and a claim campaign, want still 2", n)
	}
}
