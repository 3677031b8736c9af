package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"
)

// The end-to-end tests drive the stack only through HTTP and the broker, with the compiled
// function binaries from dist/ (make build) running under the FC emulator.

func TestMain(m *testing.M) { services.Main(m) }

var dbSeq atomic.Int64

// logTail keeps the last max bytes written to it.
type logTail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - l.max; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// harness is one running stack with clients for it.
type harness struct {
	t        testing.TB
	s        *stack.Stack
	operator string
	client   *stack.Client
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
	} else if opts.Output == nil {
		// The functions' own logs are the only account of why an instance exited or a claim failed:
		// kept quietly, and shown when the test fails.
		tail := &logTail{max: 256 << 10}
		opts.Output = tail
		if opts.Logger == nil {
			opts.Logger = slog.New(slog.NewTextHandler(tail, nil))
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the stack's last output:\n%s", tail.String())
			}
		})
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
	h := &harness{t: t, s: s, operator: op, client: stack.NewClient(s.HTTP)}
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

type reply = stack.Reply

func (h *harness) do(method, path, token string, body any, headers ...string) reply {
	h.t.Helper()
	r, err := h.client.Do(method, path, token, body, headers...)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
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

// onCluster reports whether this run is the Redis Cluster pass of `make test`
// (BENEFITS_TEST_REDIS_MODE=cluster): then every stack runs on a private Redis Cluster of its own
// (three masters with a replica each) that the functions reach directly with REDIS_WAIT_REPLICAS=1,
// as template.yml configures a cluster.
func onCluster() bool { return os.Getenv(services.EnvRedisMode) == "cluster" }

func stackOptions() stack.Options { return stack.Options{RedisCluster: onCluster()} }

// skipOnCluster skips a test that cannot apply to a Redis Cluster, only in the cluster pass.
func skipOnCluster(t testing.TB, why string) {
	t.Helper()
	if onCluster() {
		t.Skip("not on a Redis Cluster: " + why)
	}
}

// redisClient is a client of the stack's cache, direct (not through Toxiproxy): a cluster client when
// the stack runs a cluster.
func (h *harness) redisClient() redis.UniversalClient {
	h.t.Helper()
	var c redis.UniversalClient
	if h.s.Cluster != nil {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: h.s.RedisClusterAddrs})
	} else {
		c = redis.NewClient(&redis.Options{Addr: h.s.RedisAddr})
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}
