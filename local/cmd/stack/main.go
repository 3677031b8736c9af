// Command stack runs the whole set on this machine (`make run`): private MariaDB and Redis, the
// RocketMQ broker emulator, Toxiproxy and the FC emulator with the compiled functions, then plays a
// short demo and stays up until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"
)

func main() {
	demo := flag.Bool("demo", true, "play the demo once the stack is up")
	timeScale := flag.Float64("time-scale", 1, "multiplies the RocketMQ triggers' retry schedule")
	cluster := flag.Bool("redis-cluster", false, "run a private Redis Cluster (3 masters, 3 replicas) instead of one Redis")
	broker := flag.String("broker", os.Getenv("BROKER"), "RocketMQ: emulator (default) or apache (Apache RocketMQ 5 itself)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logDir, err := os.MkdirTemp("", "benefits-run-")
	if err != nil {
		fail(err)
	}
	logPath := filepath.Join(logDir, "functions.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		fail(err)
	}
	defer logFile.Close()

	say("starting the stack (function logs go to %s)", logPath)
	start := time.Now()
	s, err := stack.Start(ctx, stack.Options{
		JWTSecret: os.Getenv("JWT_SECRET"), Timers: true, TimeScale: *timeScale, Output: logFile, Logger: log, Broker: *broker,
		RedisCluster: *cluster,
	})
	if err != nil {
		fail(err)
	}
	defer s.Close()
	say("stack up in %.1fs", time.Since(start).Seconds())

	d := &demoClient{Client: stack.NewClient(s.HTTP), secret: s.JWTSecret}
	d.operator = d.token("ops-1", auth.RoleOperator)
	// A fresh cache is trusted only after the timer rebuilt it; run that now rather than in 10 s.
	if r := d.call("POST", "/_local/timers/timer/cache-rebuild", "", nil); r.Status != 200 {
		fail(fmt.Errorf("cache rebuild: %d %s", r.Status, r.Raw))
	}
	if *demo {
		if err := d.run(ctx); err != nil && ctx.Err() == nil {
			say("demo stopped: %v", err)
		}
	}
	if ctx.Err() == nil {
		d.printHowTo(s)
		<-ctx.Done()
	}
	say("stopping everything")
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "make run:", err)
	os.Exit(1)
}

type demoClient struct {
	*stack.Client
	secret, operator string
}

func (d *demoClient) token(sub string, role auth.Role) string {
	t, err := auth.Issue(d.secret, sub, role, 24*time.Hour, time.Now())
	if err != nil {
		fail(err)
	}
	return t
}

// call is Do for a demo that carries on: a failed request is a reply with status 0 and the error.
func (d *demoClient) call(method, path, token string, body any, headers ...string) stack.Reply {
	r, err := d.Do(method, path, token, body, headers...)
	if err != nil {
		return stack.Reply{Raw: err.Error()}
	}
	return r
}

func (d *demoClient) campaign(over map[string]any) (string, stack.Reply, error) {
	now := time.Now().UTC()
	c := map[string]any{
		"name": "demo", "benefit": map[string]any{"type": "coupon", "amount": 500}, "audience": map[string]any{"segment": "all"},
		"cost_points": 0, "mode": "claim", "starts_at": now.Add(-time.Minute).Format(time.RFC3339),
		"ends_at": now.Add(24 * time.Hour).Format(time.RFC3339), "stock": 100, "per_user_limit": 1, "status": "active",
	}
	for k, v := range over {
		c[k] = v
	}
	r := d.call("POST", "/v1/campaigns", d.operator, c)
	if r.Status != 201 {
		return "", r, fmt.Errorf("create campaign: %d %s", r.Status, r.Raw)
	}
	return r.Field("campaign", "id").(string), r, nil
}

func (d *demoClient) run(ctx context.Context) error {
	say("demo 1/3: a campaign of 100,000 coupons lowered to 10 while users claim")
	id, _, err := d.campaign(map[string]any{"name": "Double 11: 5 yuan off", "stock": 100000})
	if err != nil {
		return err
	}
	var granted, refused atomic.Int64
	codes := sync.Map{}
	stopClaims := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopClaims:
					return
				case <-ctx.Done():
					return
				default:
				}
				user := fmt.Sprintf("shopper-%d-%d", w, i)
				r := d.call("POST", "/v1/claims", d.token(user, auth.RoleUser), map[string]any{"campaign_id": id, "request_id": "r1"})
				if r.Status == 201 {
					granted.Add(1)
				} else {
					refused.Add(1)
					code, _ := r.Field("error", "code").(string)
					n, _ := codes.LoadOrStore(code, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	before := granted.Load()
	cur := d.call("GET", "/v1/campaigns/"+id, d.operator, nil)
	version := fmt.Sprint(cur.Field("campaign", "version"))
	t0 := time.Now()
	patch := d.call("PATCH", "/v1/campaigns/"+id, d.operator, map[string]any{"stock": 10}, "If-Match", version)
	took := time.Since(t0)
	if patch.Status != 200 {
		close(stopClaims)
		wg.Wait()
		return fmt.Errorf("patch: %d %s", patch.Status, patch.Raw)
	}
	say("  %d claims granted so far; PATCH stock 100000 -> 10 answered in %s, cache in_sync=%v (commit, RocketMQ, cachesync, Redis)",
		before, took.Round(time.Millisecond), patch.Field("cache", "in_sync"))
	time.Sleep(1500 * time.Millisecond)
	close(stopClaims)
	wg.Wait()
	final := d.call("GET", "/v1/campaigns/"+id, d.operator, nil)
	say("  when the change landed the cache had issued %v; after 1.5 s more of claims: issued=%v remaining=%v (%d granted, %d refused in all)",
		patch.Field("cache", "issued"), final.Field("cache", "issued"), final.Field("cache", "remaining"), granted.Load(), refused.Load())
	codes.Range(func(k, v any) bool {
		say("    refused with %-14v x%d", k, v.(*atomic.Int64).Load())
		return true
	})

	say("demo 2/3: a coupon that costs 30 points")
	user := "points-fan"
	if r := d.call("PUT", "/v1/users/"+user, d.operator, map[string]any{"registered_at": time.Now().Add(-400 * 24 * time.Hour).UTC().Format(time.RFC3339), "member": true}); r.Status != 200 {
		return fmt.Errorf("put user: %d %s", r.Status, r.Raw)
	}
	if r := d.call("POST", "/v1/users/"+user+"/points", d.operator, map[string]any{"delta": 70, "request_id": "welcome-bonus"}); r.Status != 200 {
		return fmt.Errorf("credit points: %d %s", r.Status, r.Raw)
	}
	pid, _, err := d.campaign(map[string]any{"name": "Members: 20 yuan red envelope for 30 points", "benefit": map[string]any{"type": "red_envelope", "amount": 2000}, "audience": map[string]any{"segment": "members"}, "cost_points": 30, "per_user_limit": 5})
	if err != nil {
		return err
	}
	ut := d.token(user, auth.RoleUser)
	for i := 1; i <= 3; i++ {
		r := d.call("POST", "/v1/claims", ut, map[string]any{"campaign_id": pid, "request_id": fmt.Sprintf("buy-%d", i)})
		code, _ := r.Field("error", "code").(string)
		say("  claim %d: %d %s", i, r.Status, code)
	}
	again := d.call("POST", "/v1/claims", ut, map[string]any{"campaign_id": pid, "request_id": "buy-1"})
	say("  claim 1 retried with the same request_id: %d (the same claim, nothing debited twice)", again.Status)
	time.Sleep(1500 * time.Millisecond) // the ledger's batch window
	u := d.call("GET", "/v1/users/"+user, d.operator, nil)
	say("  points now %v (70 credited, 2 x 30 debited)", u.Field("user", "points"))

	say("demo 3/3: 3 coupons granted at a time 5 s ahead to new users, oldest registration first")
	now := time.Now().UTC()
	regs := map[string]time.Duration{"newbie-a": 3 * time.Hour, "newbie-b": 2 * time.Hour, "newbie-c": time.Hour, "newbie-d": 30 * time.Minute, "veteran": 900 * time.Hour}
	for name, ago := range regs {
		if r := d.call("PUT", "/v1/users/"+name, d.operator, map[string]any{"registered_at": now.Add(-ago).Format(time.RFC3339), "member": false}); r.Status != 200 {
			return fmt.Errorf("put user: %d %s", r.Status, r.Raw)
		}
	}
	at := now.Add(5 * time.Second)
	if _, _, err := d.campaign(map[string]any{"name": "Welcome coupon", "mode": "grant", "audience": map[string]any{"segment": "new_users", "new_user_days": 7}, "starts_at": at.Format(time.RFC3339), "stock": 3}); err != nil {
		return err
	}
	say("  grant campaign starts at %s: a RocketMQ delay message for starts_at starts it on time (the minute timer is the safety net)", at.Format(time.TimeOnly))
	names := make([]string, 0, len(regs))
	for n := range regs {
		names = append(names, n)
	}
	sort.Strings(names)
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		got := []string{}
		for _, n := range names {
			r := d.call("GET", "/v1/claims", d.token(n, auth.RoleUser), nil)
			if list, _ := r.Body["claims"].([]any); len(list) > 0 {
				got = append(got, n)
			}
		}
		if len(got) == 3 {
			say("  granted to %v at %s (newbie-d, the newest, and veteran, too old, got none)", got, time.Now().Format(time.TimeOnly))
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("the scheduled grant did not show up in time")
}

func (d *demoClient) printHowTo(s *stack.Stack) {
	user := d.token("alice", auth.RoleUser)
	proxies := "mysql, redis, rocketmq"
	cut := fmt.Sprintf(`curl -s -X POST %s/proxies/redis -d '{"enabled":false}'    # cut Redis; claims answer 503`, s.Toxiproxy)
	if s.Cluster != nil {
		// A cluster redirects its clients to its nodes' own addresses, so Toxiproxy cannot front it.
		proxies = "mysql, rocketmq; the Redis Cluster is reached directly"
		cut = "# the cluster: kill a master (kill -9 <pid of a redis-server>); its slots answer 503 until its replica takes over"
	}
	fmt.Printf(`
==> the stack is running; Ctrl-C stops everything
    HTTP (rules, claim):  %s
    RocketMQ endpoint:    %s
    Toxiproxy API:        %s   (proxies: %s)
    MySQL (direct):       %s
    Redis (direct):       %s
    JWT_SECRET:           %s

    OP=%s
    ALICE=%s

    curl -s -X POST %s/v1/campaigns -H "Authorization: Bearer $OP" -H 'Content-Type: application/json' \
      -d '{"name":"try me","benefit":{"type":"coupon","amount":300},"audience":{"segment":"all"},"cost_points":0,"mode":"claim","starts_at":"%s","ends_at":"%s","stock":5,"per_user_limit":1,"status":"active"}'
    curl -s %s/v1/campaigns -H "Authorization: Bearer $OP"
    curl -s -X POST %s/v1/claims -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' -d '{"campaign_id":"<id>","request_id":"first"}'
    curl -s %s/v1/claims -H "Authorization: Bearer $ALICE"
    curl -s -X POST %s/_local/timers/timer/reconcile
    %s
`, s.HTTP, s.Broker, s.Toxiproxy, proxies, s.MySQLDSN, redisWhere(s), s.JWTSecret, d.operator, user,
		s.HTTP, time.Now().UTC().Add(-time.Minute).Format(time.RFC3339), time.Now().UTC().Add(24*time.Hour).Format(time.RFC3339),
		s.HTTP, s.HTTP, s.HTTP, s.HTTP, cut)
}

// redisWhere is the standalone address, or the cluster's seeds (which Toxiproxy does not front).
func redisWhere(s *stack.Stack) string {
	if len(s.RedisClusterAddrs) > 0 {
		return "cluster " + strings.Join(s.RedisClusterAddrs, ",")
	}
	return s.RedisAddr
}
