package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"

	"github.com/benefit-issuance/benefits/local/fctemplate"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

const outage = 30 * time.Second

// retryIntervalAt is the rule-changes trigger's wait between the attempt before elapsed (since a
// change first failed) and the one after, on the template's retry strategy: what a change given back
// to the trigger at every failure waits, at worst, once the link returns.
func (b *bench) retryIntervalAt(elapsed time.Duration) (time.Duration, string, error) {
	f, ok := b.s.Template.Function("cachesync")
	if !ok {
		return 0, "", fmt.Errorf("no cachesync function in template.yml")
	}
	tr, ok := f.Trigger("rule-changes")
	if !ok {
		return 0, "", fmt.Errorf("no rule-changes trigger on cachesync")
	}
	ec, err := tr.EventBridge()
	if err != nil {
		return 0, "", err
	}
	strategy := "BACKOFF_RETRY"
	if ec.RunOptions != nil && ec.RunOptions.RetryStrategy != nil {
		strategy = strings.ToUpper(ec.RunOptions.RetryStrategy.PushRetryStrategy)
	}
	if strategy != fctemplate.RetryExponentialDecay {
		// BACKOFF_RETRY: 10 to 20 s apart; the middle.
		return 15 * time.Second, strategy, nil
	}
	at, wait := time.Duration(0), time.Second
	for at+wait < elapsed {
		at += wait
		wait = min(2*wait, 512*time.Second)
	}
	return wait, strategy, nil
}

// convergenceRows: campaigns changed while the functions' link to Redis is cut for 30 s; the time
// from the link's return until Redis holds every change MySQL has, beside the trigger's retry interval
// at that point (what a change given back to the trigger at each failure would wait).
func (b *bench) convergenceRows(ctx context.Context) error {
	const k = 5
	ids := make([]string, k)
	for i := range ids {
		id, err := b.createCampaign(ctx, 1000, 1)
		if err != nil {
			return err
		}
		ids[i] = id
	}
	proxy, err := toxiclient.NewClient(strings.TrimPrefix(b.s.Toxiproxy, "http://")).Proxy("redis")
	if err != nil {
		return err
	}
	cut := time.Now()
	if err := proxy.Disable(); err != nil {
		return err
	}
	b.progress("  convergence: the functions' Redis link cut for %s; %d campaigns changed in it", outage, k)
	defer proxy.Enable()
	var firstChange time.Time
	for i, id := range ids {
		if i == 0 {
			firstChange = time.Now()
		}
		r, err := b.client.Do("PATCH", "/v1/campaigns/"+id, b.operator, map[string]any{"stock": 500 + i}, "If-Match", "1")
		if err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("patch during the outage: %v %d %s", err, r.Status, r.Raw)
		}
	}
	time.Sleep(time.Until(cut.Add(outage)))
	if err := proxy.Enable(); err != nil {
		return err
	}
	up := time.Now()
	cache := rediscache.New(b.rdb)
	var converged time.Duration
	for {
		done := 0
		for i, id := range ids {
			c, err := cache.Campaign(ctx, id)
			if err == nil && c.Version == 2 && c.Stock == int64(500+i) {
				done++
			}
		}
		if done == k {
			converged = time.Since(up)
			break
		}
		if time.Since(up) > 3*time.Minute {
			return fmt.Errorf("%d of %d changes in Redis 3 minutes after the link returned", done, k)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ref, strategy, err := b.retryIntervalAt(up.Sub(firstChange))
	if err != nil {
		return err
	}
	b.progress("  convergence: every change in Redis %s after the link returned; the trigger's retry interval then: %s (%s)", converged.Round(time.Millisecond), ref, strategy)
	ours := msOf(converged)
	b.rows = append(b.rows, Row{
		Name: fmt.Sprintf("convergence ms after a %s Redis outage ends (%d campaigns changed in it): cache equal to MySQL vs the trigger's retry interval then", outage, k),
		Ours: num(ours), Reference: num(msOf(ref)), Ratio: num(ratio(ours, msOf(ref))), Goal: "≤ 2,000 ms", Met: ours <= 2000,
		Detail: fmt.Sprintf("the functions' Toxiproxy link to Redis disabled for %s; %d PATCHes in its first seconds; Redis polled every 5 ms for each campaign's version and stock; reference: %s's wait between attempts %s after the first change failed",
			outage, k, strategy, up.Sub(firstChange).Round(100*time.Millisecond)),
	})
	return nil
}

// onSecondStack runs rows on a private stack of its own, with Toxiproxy between the functions and
// Redis (the outage is a cut of that link) whatever -toxiproxy says for the main one: the wipe's
// rebuild first drains the grant backstop's group, which holds every grant since it was created, and
// in production its minute timer keeps that group drained; on the bench's stack (no cron timers) it
// would hold every grant of the rows before.
func (b *bench) onSecondStack(ctx context.Context, rows func(context.Context) error) error {
	logFile, err := os.Create(filepath.Join(b.out, "stack-second.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	b.progress("  starting a second private stack for the outage and wipe rows (its log: %s)", logFile.Name())
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s2, err := stack.Start(sctx, stack.Options{
		Root: b.fnRoot, HTTPAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", ToxiproxyAddr: "127.0.0.1:0",
		Env: map[string]string{"CLAIM_RATE_LIMIT": "0"}, Output: logFile, Logger: slog.New(slog.NewTextHandler(logFile, nil)),
	})
	cancel()
	if err != nil {
		return err
	}
	defer s2.Close()
	// The helpers below work on b's stack: point them at the second one for the while.
	saved := *b
	defer func() { b.s, b.client, b.operator, b.rdb = saved.s, saved.client, saved.operator, saved.rdb }()
	b.s, b.client = s2, stack.NewClient(s2.HTTP)
	if b.operator, err = auth.Issue(s2.JWTSecret, "ops-bench", auth.RoleOperator, time.Hour, time.Now()); err != nil {
		return err
	}
	b.rdb = redis.NewClient(&redis.Options{Addr: s2.RedisAddr})
	defer b.rdb.Close()
	if r, err := b.client.Do("POST", "/_local/timers/timer/cache-rebuild", "", nil); err != nil || r.Status != 200 {
		return fmt.Errorf("cache rebuild: %v %d %s", err, r.Status, r.Raw)
	}
	return rows(ctx)
}

// wipeRows: a claim rush over HTTP (a load process of its own, 16 clients), Redis wiped (FLUSHALL)
// 5 s into it; the time from the wipe to the next granted claim, beside the time the ledger needs to
// record the grants acknowledged before the wipe (MySQL's issued count reaching Redis's just before).
func (b *bench) wipeRows(ctx context.Context) error {
	db, err := sql.Open("mysql", b.s.MySQLDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	id, err := b.createCampaign(ctx, 1_000_000_000, 1_000_000)
	if err != nil {
		return err
	}
	loadDone := make(chan error, 1)
	var rep Report
	go func() {
		r, err := b.load(ctx, "-mode", "http", "-url", b.s.HTTP, "-secret", b.s.JWTSecret, "-campaign", id,
			"-c", "16", "-users", fmt.Sprint(b.users), "-d", "45s", "-rid", "wipe-")
		rep = r
		loadDone <- err
	}()
	time.Sleep(5 * time.Second)
	cache := rediscache.New(b.rdb)
	before, err := cache.Campaign(ctx, id)
	if err != nil {
		return err
	}
	if err := b.rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	wiped := time.Now()
	b.progress("  wipe: Redis wiped 5 s into a rush of 16 HTTP clients, %d units issued before it", before.Issued)
	var served, recorded time.Duration
	baseline := int64(-1)
	for served == 0 || recorded == 0 {
		if time.Since(wiped) > 40*time.Second {
			break
		}
		if recorded == 0 {
			var issued int64
			if err := db.QueryRowContext(ctx, "SELECT issued FROM campaigns WHERE id = ?", id).Scan(&issued); err == nil && issued >= before.Issued {
				recorded = time.Since(wiped)
			}
		}
		if served == 0 {
			if c, err := cache.Campaign(ctx, id); err == nil && c.Present {
				if baseline < 0 {
					baseline = c.Issued
				} else if c.Issued > baseline {
					served = time.Since(wiped)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-loadDone; err != nil {
		return err
	}
	if served == 0 || recorded == 0 {
		return fmt.Errorf("40 s after the wipe: next grant %s, grants before it recorded %s (load: %s)", served, recorded, rep)
	}
	ours, ref := msOf(served), msOf(recorded)
	b.progress("  wipe: next granted claim %s after the wipe; the ledger recorded the grants before it in %s (load: %s)", served.Round(time.Millisecond), recorded.Round(time.Millisecond), rep)
	b.rows = append(b.rows, Row{
		Name: "claims served again ms after the cache is wiped mid-rush (16 HTTP clients): the wipe → the next granted claim vs the ledger recording the grants acknowledged before it",
		Ours: num(ours), Reference: num(ref), Ratio: num(ratio(ours, ref)), Goal: "≤ reference + 1,000 ms", Met: ours <= ref+1000,
		Detail: fmt.Sprintf("on a second private stack; FLUSHALL 5 s into the rush, %d units issued before it; the rebuild woken by claims (the timer's cron is off); load over 45 s: %s", before.Issued, rep),
	})
	return nil
}
