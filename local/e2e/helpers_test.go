package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"
)

// The end-to-end tests drive the stack only through HTTP and the broker, with the compiled
// function binaries from dist/ (make build) running under the FC emulator.

func TestMain(m *testing.M) { services.Main(m) }

var dbSeq atomic.Int64

// harness is one running stack with clients for it.
type harness struct {
	t        testing.TB
	s        *stack.Stack
	operator string
	http     *http.Client
}

func startStack(t testing.TB, opts stack.Options) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests need the compiled functions; skipped with -short")
	}
	root, err := stack.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/dist/claim/main"); err != nil {
		t.Fatalf("compiled functions missing: run make build first (%v)", err)
	}
	env := services.Env(t)
	opts.Root = root
	opts.HTTPAddr, opts.BrokerAddr, opts.ToxiproxyAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	opts.MySQLBaseDSN = env.MySQLBaseDSN()
	opts.Database = fmt.Sprintf("e2e_%d_%d", os.Getpid(), dbSeq.Add(1))
	if opts.TimeScale == 0 {
		opts.TimeScale = 0.001
	}
	if testing.Verbose() {
		opts.Output = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	op, err := auth.Issue(s.JWTSecret, "ops-1", auth.RoleOperator, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, operator: op, http: &http.Client{Timeout: 30 * time.Second}}
	// A fresh Redis is not trusted until the timer has rebuilt it from MySQL (claims answer 503).
	h.runTimer("cache-rebuild")
	return h
}

func (h *harness) runTimer(trigger string) reply {
	h.t.Helper()
	return h.must(h.do("POST", "/_local/timers/timer/"+trigger, "", nil), http.StatusOK)
}

func (h *harness) userToken(id string) string {
	tok, err := auth.Issue(h.s.JWTSecret, id, auth.RoleUser, time.Hour, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r reply) code() string {
	if e, ok := r.Body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func (h *harness) do(method, path, token string, body any, headers ...string) reply {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.s.HTTP+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

func (h *harness) must(r reply, status int) reply {
	h.t.Helper()
	if r.Status != status {
		h.t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	return r
}

func campaignBody(overrides map[string]any) map[string]any {
	now := time.Now().UTC()
	c := map[string]any{
		"name":           "e2e campaign",
		"benefit":        map[string]any{"type": "coupon", "amount": 500},
		"audience":       map[string]any{"segment": "all"},
		"cost_points":    0,
		"mode":           "claim",
		"starts_at":      now.Add(-time.Hour).Format(time.RFC3339),
		"ends_at":        now.Add(24 * time.Hour).Format(time.RFC3339),
		"stock":          100,
		"per_user_limit": 1,
		"status":         "active",
	}
	for k, v := range overrides {
		c[k] = v
	}
	return c
}

func (h *harness) createCampaign(overrides map[string]any) (string, reply) {
	h.t.Helper()
	r := h.must(h.do("POST", "/v1/campaigns", h.operator, campaignBody(overrides)), http.StatusCreated)
	camp := r.Body["campaign"].(map[string]any)
	return camp["id"].(string), r
}

func inSync(r reply) bool {
	c, _ := r.Body["cache"].(map[string]any)
	v, _ := c["in_sync"].(bool)
	return v
}

// eventually polls cond until it holds or the wait is over.
func eventually(t testing.TB, wait time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", wait, what)
}

func (h *harness) claim(user, campaign, request string) reply {
	return h.do("POST", "/v1/claims", h.userToken(user), map[string]any{"campaign_id": campaign, "request_id": request})
}

func stackOptions() stack.Options { return stack.Options{} }
