package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/benefit-issuance/benefits/shared/auth"
)

// TestHTTPContract walks every route and error code of the contract (shared/httpapi/openapi.yaml) through the FC emulator.
func TestHTTPContract(t *testing.T) {
	h := startStack(t, stackOptions())
	now := time.Now().UTC()
	id, created := h.createCampaign(map[string]any{"stock": 2, "per_user_limit": 1})
	if v := created.Body["campaign"].(map[string]any)["version"]; v != float64(1) {
		t.Fatalf("new campaign version %v, want 1", v)
	}
	user := h.userToken("alice")

	t.Run("authentication", func(t *testing.T) {
		expired, _ := auth.Issue(h.s.JWTSecret, "alice", auth.RoleUser, time.Minute, now.Add(-time.Hour))
		forged, _ := auth.Issue("another-secret-of-enough-length", "alice", auth.RoleUser, time.Hour, now)
		badSub, _ := auth.Issue(h.s.JWTSecret, "bad sub!", auth.RoleUser, time.Hour, now)
		cases := []struct {
			name, method, path, token string
			status                    int
			code                      string
		}{
			{"no token", "GET", "/v1/campaigns", "", 401, "unauthenticated"},
			{"malformed token", "GET", "/v1/campaigns", "not-a-jwt", 401, "unauthenticated"},
			{"expired", "GET", "/v1/claims", expired, 401, "unauthenticated"},
			{"forged", "GET", "/v1/claims", forged, 401, "unauthenticated"},
			{"malformed sub", "GET", "/v1/claims", badSub, 401, "unauthenticated"},
			{"user on admin route", "GET", "/v1/campaigns", user, 403, "forbidden"},
			{"operator on claim route", "GET", "/v1/claims", h.operator, 403, "forbidden"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := h.do(c.method, c.path, c.token, nil)
				if r.Status != c.status || r.Code() != c.code {
					t.Fatalf("%d %q, want %d %q: %s", r.Status, r.Code(), c.status, c.code, r.Raw)
				}
			})
		}
	})

	t.Run("campaign reads", func(t *testing.T) {
		r := h.must(h.do("GET", "/v1/campaigns/"+id, h.operator, nil), 200)
		if r.Header.Get("ETag") != `"1"` {
			t.Fatalf("ETag %q, want \"1\"", r.Header.Get("ETag"))
		}
		cache := r.Body["cache"].(map[string]any)
		if cache["in_sync"] != true || cache["remaining"] != float64(2) || cache["version"] != float64(1) {
			t.Fatalf("cache view %v", cache)
		}
		list := h.must(h.do("GET", "/v1/campaigns", h.operator, nil), 200)
		if items, _ := list.Body["campaigns"].([]any); len(items) != 1 {
			t.Fatalf("list has %d campaigns, want 1", len(items))
		}
		if r := h.do("GET", "/v1/campaigns/cmp_doesnotexist", h.operator, nil); r.Status != 404 || r.Code() != "campaign_not_found" {
			t.Fatalf("unknown campaign: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("bad campaign bodies", func(t *testing.T) {
		cases := []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"negative stock", campaignBody(map[string]any{"stock": -1}), 400, "stock"},
			{"unknown field", campaignBody(map[string]any{"colour": "red"}), 400, "colour"},
			{"read-only id", campaignBody(map[string]any{"id": "cmp_x"}), 400, "id"},
			{"bad benefit type", campaignBody(map[string]any{"benefit": map[string]any{"type": "cash", "amount": 1}}), 400, "benefit"},
			{"new_users without days", campaignBody(map[string]any{"audience": map[string]any{"segment": "new_users"}}), 400, "new_user_days"},
			{"trailing data", `{"name":"x"} {}`, 400, ""},
			{"too large", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, 413, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := h.do("POST", "/v1/campaigns", h.operator, c.body)
				if r.Status != c.status {
					t.Fatalf("%d, want %d: %s", r.Status, c.status, r.Raw)
				}
				msg, _ := r.Body["error"].(map[string]any)["message"].(string)
				if c.field != "" && !strings.Contains(msg, c.field) {
					t.Fatalf("message %q does not name %q", msg, c.field)
				}
			})
		}
		list := h.must(h.do("GET", "/v1/campaigns", h.operator, nil), 200)
		if items, _ := list.Body["campaigns"].([]any); len(items) != 1 {
			t.Fatalf("a refused body wrote a campaign: %d campaigns", len(items))
		}
	})

	t.Run("patch preconditions", func(t *testing.T) {
		pid, _ := h.createCampaign(nil)
		if r := h.do("PATCH", "/v1/campaigns/"+pid, h.operator, map[string]any{"stock": 5}); r.Status != 428 || r.Code() != "precondition_required" {
			t.Fatalf("without If-Match: %d %s", r.Status, r.Raw)
		}
		r := h.must(h.do("PATCH", "/v1/campaigns/"+pid, h.operator, map[string]any{"stock": 5}, "If-Match", `"1"`), 200)
		if v := r.Body["campaign"].(map[string]any)["version"]; v != float64(2) || !inSync(r) {
			t.Fatalf("after patch: version %v in_sync %v", v, inSync(r))
		}
		if r := h.do("PATCH", "/v1/campaigns/"+pid, h.operator, map[string]any{"stock": 6}, "If-Match", "1"); r.Status != 412 || r.Code() != "version_mismatch" {
			t.Fatalf("stale If-Match: %d %s", r.Status, r.Raw)
		}
		if r := h.do("PATCH", "/v1/campaigns/"+pid, h.operator, map[string]any{"mode": "grant"}, "If-Match", "2"); r.Status != 400 {
			t.Fatalf("patching mode: %d %s", r.Status, r.Raw)
		}
		if r := h.do("PATCH", "/v1/campaigns/cmp_nope", h.operator, map[string]any{"stock": 1}, "If-Match", "1"); r.Status != 404 || r.Code() != "campaign_not_found" {
			t.Fatalf("patching an unknown campaign: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("users and points", func(t *testing.T) {
		if r := h.do("GET", "/v1/users/nobody", h.operator, nil); r.Status != 404 || r.Code() != "user_not_found" {
			t.Fatalf("unknown user: %d %s", r.Status, r.Raw)
		}
		if r := h.do("POST", "/v1/users/nobody/points", h.operator, map[string]any{"delta": 5, "request_id": "x"}); r.Status != 404 || r.Code() != "user_not_found" {
			t.Fatalf("points for an unknown user: %d %s", r.Status, r.Raw)
		}
		r := h.must(h.do("PUT", "/v1/users/bob", h.operator, map[string]any{"registered_at": now.Add(-time.Hour).Format(time.RFC3339), "member": true}), 200)
		if !inSync(r) {
			t.Fatalf("PUT user not in sync: %s", r.Raw)
		}
		for range 2 {
			r = h.must(h.do("POST", "/v1/users/bob/points", h.operator, map[string]any{"delta": 40, "request_id": "gift-1"}), 200)
		}
		if p := r.Body["user"].(map[string]any)["points"]; p != float64(40) {
			t.Fatalf("points after the same credit twice = %v, want 40", p)
		}
		if r := h.do("POST", "/v1/users/bob/points", h.operator, map[string]any{"delta": -5, "request_id": "neg"}); r.Status != 400 {
			t.Fatalf("negative delta: %d %s", r.Status, r.Raw)
		}
		g := h.must(h.do("GET", "/v1/users/bob", h.operator, nil), 200)
		if g.Body["user"].(map[string]any)["member"] != true {
			t.Fatalf("GET user: %s", g.Raw)
		}
	})

	t.Run("claim answers", func(t *testing.T) {
		h.must(h.do("PUT", "/v1/users/member-1", h.operator, map[string]any{"registered_at": now.Add(-time.Hour).Format(time.RFC3339), "member": true}), 200)
		h.must(h.do("POST", "/v1/users/member-1/points", h.operator, map[string]any{"delta": 10, "request_id": "p"}), 200)
		grant, _ := h.createCampaign(map[string]any{"mode": "grant", "starts_at": now.Add(time.Hour).Format(time.RFC3339)})
		members, _ := h.createCampaign(map[string]any{"audience": map[string]any{"segment": "members"}})
		future, _ := h.createCampaign(map[string]any{"starts_at": now.Add(time.Hour).Format(time.RFC3339)})
		past, _ := h.createCampaign(map[string]any{"starts_at": now.Add(-2 * time.Hour).Format(time.RFC3339), "ends_at": now.Add(-time.Hour).Format(time.RFC3339)})
		paused, _ := h.createCampaign(map[string]any{"status": "paused"})
		costly, _ := h.createCampaign(map[string]any{"cost_points": 50, "audience": map[string]any{"segment": "members"}})
		cases := []struct {
			name, user, campaign, request string
			body                          any
			status                        int
			code                          string
		}{
			{"first claim", "alice", id, "a1", nil, 201, ""},
			{"same request again", "alice", id, "a1", nil, 200, ""},
			{"limit reached", "alice", id, "a2", nil, 409, "limit_reached"},
			{"last unit", "carol", id, "c1", nil, 201, ""},
			{"sold out", "dave", id, "d1", nil, 409, "sold_out"},
			{"unknown campaign", "alice", "cmp_nope", "x", nil, 404, "campaign_not_found"},
			{"grant mode", "alice", grant, "x", nil, 409, "not_claimable"},
			{"not a member", "alice", members, "x", nil, 403, "not_eligible"},
			{"member", "member-1", members, "x", nil, 201, ""},
			{"not started", "alice", future, "x", nil, 409, "not_started"},
			{"ended", "alice", past, "x", nil, 409, "ended"},
			{"paused", "alice", paused, "x", nil, 409, "paused"},
			{"insufficient points", "member-1", costly, "y", nil, 409, "insufficient_points"},
			{"malformed body", "alice", "", "", `{"campaign_id": 5}`, 400, "invalid_request"},
			{"user id in body", "alice", "", "", fmt.Sprintf(`{"campaign_id":%q,"request_id":"z","user_id":"bob"}`, id), 400, "invalid_request"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body any = map[string]any{"campaign_id": c.campaign, "request_id": c.request}
				if c.body != nil {
					body = c.body
				}
				r := h.do("POST", "/v1/claims", h.userToken(c.user), body)
				if r.Status != c.status || r.Code() != c.code {
					t.Fatalf("%d %q, want %d %q: %s", r.Status, r.Code(), c.status, c.code, r.Raw)
				}
			})
		}
		eventually(t, 10*time.Second, "alice's claim in MySQL", func() bool {
			r := h.do("GET", "/v1/claims", user, nil)
			items, _ := r.Body["claims"].([]any)
			return r.Status == 200 && len(items) == 1 && items[0].(map[string]any)["campaign_id"] == id
		})
	})

	t.Run("rate limit", func(t *testing.T) {
		many, _ := h.createCampaign(map[string]any{"stock": 1000, "per_user_limit": 1000})
		tok := h.userToken("hasty")
		var mu sync.Mutex
		limited, retryAfter := 0, ""
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := h.do("POST", "/v1/claims", tok, map[string]any{"campaign_id": many, "request_id": fmt.Sprint("h", i)})
				mu.Lock()
				defer mu.Unlock()
				if r.Status == 429 && r.Code() == "rate_limited" {
					limited++
					retryAfter = r.Header.Get("Retry-After")
				}
			}()
		}
		wg.Wait()
		if limited == 0 || retryAfter == "" {
			t.Fatalf("40 claims at once from one user: %d limited, Retry-After %q", limited, retryAfter)
		}
	})

	t.Run("redis unreachable answers 503", func(t *testing.T) {
		open, _ := h.createCampaign(map[string]any{"stock": 10})
		var r reply
		if h.s.Cluster != nil {
			// No link stands in front of a cluster: the master serving the campaign stalls (SIGSTOP)
			// for the claim, as a hung host would, and continues afterwards.
			master, err := h.s.Cluster.MasterOfKey(context.Background(), "bn:{c:"+open+"}:camp")
			if err != nil {
				t.Fatal(err)
			}
			if err := h.s.Cluster.PauseNode(master); err != nil {
				t.Fatal(err)
			}
			r = h.claim("erin", open, "e1")
			if err := h.s.Cluster.ResumeNode(master); err != nil {
				t.Fatal(err)
			}
		} else {
			proxy, err := toxiclient.NewClient(strings.TrimPrefix(h.s.Toxiproxy, "http://")).Proxy("redis")
			if err != nil {
				t.Fatal(err)
			}
			if err := proxy.Disable(); err != nil {
				t.Fatal(err)
			}
			r = h.claim("erin", open, "e1")
			if err := proxy.Enable(); err != nil {
				t.Fatal(err)
			}
		}
		if r.Status != 503 || r.Code() != "unavailable" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("claim with Redis cut: %d %s (Retry-After %q)", r.Status, r.Raw, r.Header.Get("Retry-After"))
		}
		if h.s.Cluster != nil {
			// The stalled master still runs what was in its socket when it continues, so the claim's
			// outcome is unknown, as a 503 says: its retry with the same request id gets the claim,
			// new (201) or the one the stalled call made (200).
			eventually(t, 20*time.Second, "the claim's retry to succeed", func() bool {
				st := h.claim("erin", open, "e1").Status
				return st == 201 || st == 200
			})
			return
		}
		eventually(t, 10*time.Second, "claims to work again", func() bool { return h.claim("erin", open, "e2").Status == 201 })
	})

	t.Run("routing", func(t *testing.T) {
		if r := h.do("GET", "/v2/nothing", h.operator, nil); r.Status != 404 {
			t.Fatalf("unknown path: %d", r.Status)
		}
		if r := h.do("DELETE", "/v1/claims", user, nil); r.Status != http.StatusMethodNotAllowed && r.Status != 404 {
			t.Fatalf("DELETE /v1/claims: %d", r.Status)
		}
	})
}
