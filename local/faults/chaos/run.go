package chaos

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/faults/check"
	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Config of a run. Zero values pick what `make faults` uses.
type Config struct {
	Schedules int      // how many seeded schedules (default 200, or none when Replay names some)
	Seed      uint64   // the first schedule's seed; schedule i uses Seed+i
	Replay    []string // schedules in Schedule.String form, run after the generated ones
	Workload  time.Duration
	Converge  time.Duration // how long the system may take to converge after the faults are healed
	Shrink    bool          // reduce each failing schedule to a minimal one
	PerStack  int           // schedules per private stack before a fresh one (default 25)
	// Workers runs the schedules on this many private stacks at once (default 1). A schedule spends
	// most of its time waiting for the timers to converge the stores, so two stacks on two cores
	// take little more than one's time for twice the schedules.
	Workers int
	// Broker is "emulator" (default, or BROKER from the environment) or "apache": Apache RocketMQ 5
	// itself (local/apache), restarted on its store by broker faults.
	Broker string
	// Redis is "standalone" (default, or REDIS from the environment) or "cluster": the stack runs on a
	// private Redis Cluster (three masters with a replica each, REDIS_WAIT_REPLICAS=1 as the stack
	// sets it), and the generated schedules draw failovers, master kills and shard losses instead of
	// the standalone Redis's restarts and link faults.
	Redis string
	// TimerTimeScale runs the timer function's cron schedules this much faster (default 20), so that
	// convergence is measured on the timers' own schedule without minutes of waiting per schedule.
	TimerTimeScale float64
	Root           string // the repository (default: found from the working folder)
	ResultsDir     string // where the JSON report goes ("" for none)
	Out            io.Writer
}

// ScheduleResult is one schedule's outcome.
type ScheduleResult struct {
	Schedule     string            `json:"schedule"`
	Operations   int               `json:"operations"`
	Granted      int               `json:"claims_granted"`
	ConvergedMS  int64             `json:"converged_ms"` // -1: did not converge
	Violations   []check.Violation `json:"violations,omitempty"`
	Minimal      string            `json:"minimal,omitempty"`
	Inconclusive int               `json:"inconclusive,omitempty"`
	InjectErrors []string          `json:"inject_errors,omitempty"`
	Phases       map[string]int64  `json:"phases"`
}

// Report is the run's summary; its last printed line is `schedules: N, violations: V`.
type Report struct {
	Broker          string            `json:"broker"`
	Redis           string            `json:"redis"`
	Seed            uint64            `json:"seed"`
	Schedules       int               `json:"schedules"`
	Operations      int               `json:"operations"`
	FaultsByKind    map[FaultKind]int `json:"faults_by_kind"`
	ClaimsGranted   int               `json:"claims_granted"`
	Violations      int               `json:"violations"`
	Inconclusive    int               `json:"linearizability_inconclusive"`
	WorstConvergeMS int64             `json:"worst_converge_ms"`
	NotConverged    int               `json:"not_converged"`
	NotApplied      int               `json:"faults_not_applied"` // faults whose injection failed (inject_errors)
	MedianConverge  int64             `json:"median_converge_ms"`
	DeadLettered    map[string]int    `json:"dead_lettered"`
	DeadLetterWhy   map[string]int    `json:"dead_letter_reasons"`
	Failing         []ScheduleResult  `json:"failing,omitempty"`
	Results         []ScheduleResult  `json:"results"`
	Elapsed         string            `json:"elapsed"`
	byInvariant     map[string]int
}

const (
	topicChanges = "benefit-rule-changes"
	topicGrants  = "benefit-grants"
)

// runner holds the stack a run's schedules share.
type runner struct {
	cfg     Config
	s       *stack.Stack
	db      *sql.DB
	cache   *rediscache.Cache
	pub     *rmqclient.Publisher
	inj     *injector
	out     io.Writer
	secret  string
	seq     int
	worker  int // which of the run's workers, in the names of saved histories
	ran     int // schedules run on this worker
	closers []func()
}

func (r *runner) say(format string, args ...any) { fmt.Fprintf(r.out, format+"\n", args...) }

// Run starts Workers private stacks and runs every schedule on one of them.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Schedules < 0 || (cfg.Schedules == 0 && len(cfg.Replay) == 0) {
		cfg.Schedules = 200
	}
	if cfg.Workload <= 0 {
		cfg.Workload = 4 * time.Second
	}
	if cfg.Converge <= 0 {
		// A cache loss right after a backstop session died waits out that session's hold (up to 45 s
		// of invisible grants) before the drain, then the rebuild's next run: a minute and more.
		cfg.Converge = 2 * time.Minute
	}
	if cfg.PerStack <= 0 {
		cfg.PerStack = 25
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.TimerTimeScale <= 0 {
		cfg.TimerTimeScale = 20
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Broker == "" {
		cfg.Broker = os.Getenv("BROKER")
	}
	if cfg.Broker == "" {
		cfg.Broker = "emulator"
	}
	if cfg.Redis == "" {
		cfg.Redis = os.Getenv("REDIS")
	}
	switch cfg.Redis {
	case "", RedisStandalone:
		cfg.Redis = RedisStandalone
	case RedisCluster:
	default:
		return Report{}, fmt.Errorf("redis mode %q: want standalone or cluster", cfg.Redis)
	}
	began := time.Now()
	// The driver logs every connection a restart or a cut closes; the suite reports what matters.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	var scheds []Schedule
	for i := range cfg.Schedules {
		scheds = append(scheds, GenerateFor(cfg.Redis, cfg.Seed+uint64(i), cfg.Workload))
	}
	for _, text := range cfg.Replay {
		s, err := ParseSchedule(text)
		if err != nil {
			return Report{}, err
		}
		for _, f := range s.Faults {
			if cfg.Redis == RedisCluster && StandaloneOnly(f) {
				return Report{}, fmt.Errorf("schedule %s: %s needs the standalone Redis (run it without REDIS=cluster)", text, f)
			}
			if cfg.Redis != RedisCluster && ClusterOnly(f.Kind) {
				return Report{}, fmt.Errorf("schedule %s: %s needs a Redis Cluster (run it with REDIS=cluster)", text, f)
			}
		}
		scheds = append(scheds, s)
	}
	t := &tally{out: cfg.Out, total: len(scheds), cfg: cfg, results: make([]*ScheduleResult, len(scheds)),
		rep: Report{Broker: cfg.Broker, Redis: cfg.Redis, Seed: cfg.Seed, FaultsByKind: map[FaultKind]int{}, DeadLettered: map[string]int{},
			DeadLetterWhy: map[string]int{}, byInvariant: map[string]int{}}}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range scheds {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range min(cfg.Workers, len(scheds)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &runner{cfg: cfg, worker: w, out: &lockedWriter{mu: &t.mu, w: cfg.Out}}
			defer r.retire(ctx, t)
			for i := range next {
				// A fresh stack every PerStack schedules: a cache rebuild reloads every live campaign
				// and user, and a database that grew by every earlier schedule's would make later
				// rebuilds ever slower.
				if r.ran%cfg.PerStack == 0 {
					r.retire(ctx, t)
					if err := r.start(ctx); err != nil {
						cancel(err)
						return
					}
				}
				r.ran++
				res, err := r.runOne(ctx, scheds[i])
				if err != nil {
					cancel(fmt.Errorf("schedule %s: %w", scheds[i], err))
					return
				}
				if len(res.Violations) > 0 && cfg.Shrink {
					res.Minimal = r.shrink(ctx, scheds[i], res.Violations[0].Invariant).String()
				}
				t.add(i, res)
			}
		}()
	}
	wg.Wait()
	rep := t.finish()
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	printReport(cfg, rep)
	if cfg.ResultsDir != "" {
		if err := writeReport(cfg.ResultsDir, rep); err != nil {
			return rep, err
		}
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return rep, err
	}
	return rep, nil
}

// tally gathers the workers' results in schedule order and prints each as it ends.
type tally struct {
	mu       sync.Mutex
	out      io.Writer
	cfg      Config
	total    int
	done     int
	results  []*ScheduleResult
	converge []int64
	rep      Report
}

func (t *tally) add(i int, res ScheduleResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done++
	t.results[i] = &res
	rep := &t.rep
	rep.Schedules++
	rep.Operations += res.Operations
	rep.ClaimsGranted += res.Granted
	rep.Inconclusive += res.Inconclusive
	rep.NotApplied += len(res.InjectErrors)
	if res.ConvergedMS >= 0 {
		t.converge = append(t.converge, res.ConvergedMS)
		rep.WorstConvergeMS = max(rep.WorstConvergeMS, res.ConvergedMS)
	} else {
		rep.NotConverged++
	}
	status := "ok"
	if len(res.Violations) > 0 {
		status = fmt.Sprintf("%d VIOLATIONS", len(res.Violations))
		rep.Violations += len(res.Violations)
		for _, v := range res.Violations {
			rep.byInvariant[v.Invariant]++
		}
		rep.Failing = append(rep.Failing, res)
	}
	fmt.Fprintf(t.out, "[%d/%d] %s  ops=%d granted=%d converged=%dms (setup %dms, faults %dms, check %dms)  %s\n", t.done, t.total, res.Schedule,
		res.Operations, res.Granted, res.ConvergedMS, res.Phases["setup_ms"], res.Phases["faults_ms"], res.Phases["check_ms"], status)
	for _, e := range res.InjectErrors {
		fmt.Fprintf(t.out, "    fault not applied: %s\n", e)
	}
	for _, v := range res.Violations {
		fmt.Fprintf(t.out, "    violation %s\n", v)
	}
	if res.Minimal != "" {
		fmt.Fprintf(t.out, "    minimal reproduction: make faults SCHEDULE='%s'\n", res.Minimal)
	}
}

// retired adds what a stack saw (faults injected, dead letters) before it is closed.
func (t *tally) retired(injected map[FaultKind]int, dead, why map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, n := range injected {
		t.rep.FaultsByKind[k] += n
	}
	for k, n := range dead {
		t.rep.DeadLettered[k] += n
	}
	for k, n := range why {
		t.rep.DeadLetterWhy[k] += n
	}
}

func (t *tally) finish() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	rep := t.rep
	for _, res := range t.results {
		if res != nil {
			rep.Results = append(rep.Results, *res)
		}
	}
	sort.Slice(t.converge, func(i, j int) bool { return t.converge[i] < t.converge[j] })
	if len(t.converge) > 0 {
		rep.MedianConverge = t.converge[len(t.converge)/2]
	}
	return rep
}

// lockedWriter lets the workers print whole lines without interleaving them.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// retire counts what the runner's stack saw into the tally and closes the stack.
func (r *runner) retire(ctx context.Context, t *tally) {
	if r.s != nil && r.inj != nil {
		dead, why := r.deadLetters(context.WithoutCancel(ctx))
		t.retired(r.inj.injected, dead, why)
	}
	r.stop()
	r.s = nil
}

// start brings up a private stack and the runner's clients of it.
func (r *runner) start(ctx context.Context) error {
	brokerData, err := os.MkdirTemp("", "benefits-faults-broker-")
	if err != nil {
		return err
	}
	r.closers = append(r.closers, func() { os.RemoveAll(brokerData) })
	logFile, err := os.CreateTemp("", "benefits-faults-functions-*.log")
	if err != nil {
		return err
	}
	r.closers = append(r.closers, func() { logFile.Close() })
	broker := "the broker emulator with its log on disk"
	if r.cfg.Broker == "apache" {
		broker = "Apache RocketMQ 5 (fetched with Maven on first use)"
	}
	cluster := r.cfg.Redis == RedisCluster
	cache := "Redis fsync-always"
	if cluster {
		cache = "a Redis Cluster of 3 masters and 3 replicas with REDIS_WAIT_REPLICAS=1"
	}
	r.say("==> fault suite: starting a private stack (MariaDB, %s, %s, Toxiproxy, FC emulator); function logs in %s", cache, broker, logFile.Name())
	r.s, err = stack.Start(ctx, stack.Options{
		Root: r.cfg.Root, HTTPAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", ToxiproxyAddr: "127.0.0.1:0",
		TimeScale: 0.01, TimerTimeScale: r.cfg.TimerTimeScale, Timers: true, BrokerDataDir: brokerData, RedisDurable: !cluster,
		RedisCluster: cluster, Broker: r.cfg.Broker, Output: logFile, Logger: slog.New(slog.NewTextHandler(logFile, nil)),
	})
	if err != nil {
		return fmt.Errorf("start stack: %w", err)
	}
	r.closers = append(r.closers, r.s.Close)
	r.secret = r.s.JWTSecret
	if r.db, err = sql.Open("mysql", r.s.MySQLDSN); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.db.Close() })
	// The suite's own reads (readiness, the snapshot) go to the stores directly, not through the fault
	// proxies; on a cluster through a cluster client that, as the functions' does, reloads the slot map
	// every second to find a killed master's heir.
	var rdb redis.UniversalClient = redis.NewClient(&redis.Options{Addr: r.s.RedisAddr, MaxRetries: -1})
	if cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.s.RedisClusterAddrs, MaxRetries: -1, MaxRedirects: 8,
			ClusterStateReloadInterval: time.Second})
	}
	r.closers = append(r.closers, func() { rdb.Close() })
	r.cache = rediscache.New(rdb)
	if r.pub, err = rmqclient.NewPublisher(rmqclient.Config{Endpoint: r.s.Broker, ChangesTopic: topicChanges, GrantsTopic: topicGrants}); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.pub.Close() })
	r.inj = &injector{target: stackTarget{r.s}, toxi: toxiclient.NewClient(strings.TrimPrefix(r.s.Toxiproxy, "http://")),
		pub: r.pub, injected: map[FaultKind]int{}, log: func(string, ...any) {}, clusterMode: cluster}
	return r.waitReady(ctx)
}

// stop closes what start opened, in reverse order.
func (r *runner) stop() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

func (r *runner) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if ok, err := r.cache.Ready(ctx); err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the cache was never marked ready by the timer's cache-rebuild")
}

// settle bounds how long after a lost answer a claim may still take effect in Redis: a command held
// back by a latency toxic reaches Redis after the function gave up on it, at most the longest
// injected latency plus its jitter later (a timeout toxic never delivers it, and a killed instance
// sends nothing more).
const settle = maxLatency*3/2 + 500*time.Millisecond

// reservationHold: the timer sweeps paid claims left half-done for 30 s (PendingTimeout) on its
// grant-replay run, once a minute on the platform, every 3 s on the suite's faster clock.
const reservationHold = 35 * time.Second

// runOne runs a schedule on a fresh set of campaigns and users.
func (r *runner) runOne(ctx context.Context, sched Schedule) (ScheduleResult, error) {
	r.seq++
	began := time.Now()
	res := ScheduleResult{Schedule: sched.String(), ConvergedMS: -1}
	operator, err := auth.Issue(r.secret, "chaos-operator", auth.RoleOperator, 2*time.Hour, time.Now())
	if err != nil {
		return res, err
	}
	rec := &recorder{campaigns: map[string]int64{}, rng: rand.New(rand.NewPCG(sched.Seed, 7))}
	w := &workload{client: stack.NewClient(r.s.HTTP), secret: r.secret, operator: operator,
		prefix: fmt.Sprintf("s%dr%d", sched.Seed, r.seq), seed: sched.Seed, rec: rec, tokens: map[string]string{}, duration: r.cfg.Workload}
	w.client.HTTP.Timeout = 15 * time.Second
	ids, err := w.setup(ctx)
	if err != nil {
		return res, err
	}
	r.inj.deliver = rec
	r.inj.campaigns = ids
	r.inj.buckets = map[string]int{}
	for _, op := range rec.ops {
		if op.Kind == check.OpPatch && op.Rule != nil {
			r.inj.buckets[op.Campaign] = max(r.inj.buckets[op.Campaign], op.Rule.Buckets)
		}
	}
	r.inj.errs, r.inj.losses = nil, nil
	start := time.Now()
	injected := make(chan struct{})
	go func() {
		r.inj.run(ctx, start, sched.Faults)
		close(injected)
	}()
	w.run(ctx, ids)
	<-injected
	if err := r.inj.heal(ctx); err != nil {
		return res, err
	}
	res.InjectErrors = r.inj.errs
	healed := time.Now()

	h := check.History{Ops: rec.ops, ClaimID: domain.ClaimID, Settle: settle, ReservationHold: reservationHold, CacheLosses: r.inj.losses,
		HomeBucket: domain.HomeBucket}
	var snap check.Snapshot
	for {
		snap, err = r.snapshot(ctx, ids, w.prefix)
		if err == nil && len(check.Acknowledged(h, snap)) == 0 && len(check.CacheEqual(snap)) == 0 {
			res.ConvergedMS = time.Since(healed).Milliseconds()
			break
		}
		if time.Since(healed) > r.cfg.Converge || ctx.Err() != nil {
			if err != nil {
				return res, fmt.Errorf("reading the stores after healing: %w", err)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, op := range rec.ops {
		if op.Outcome == check.Granted {
			res.Granted++
		}
	}
	res.Operations = len(rec.ops)
	res.Phases = map[string]int64{"setup_ms": start.Sub(began).Milliseconds(), "faults_ms": healed.Sub(start).Milliseconds()}
	checkStart := time.Now()
	defer func() { res.Phases["check_ms"] = time.Since(checkStart).Milliseconds() }()
	for _, v := range check.Check(h, snap, 20*time.Second) {
		if v.Invariant == check.LinearizableTBD {
			res.Inconclusive++
			continue
		}
		res.Violations = append(res.Violations, v)
	}
	if len(res.Violations) > 0 && r.cfg.ResultsDir != "" {
		// The history and the stores, so that a checker change can be tried on exactly this run.
		if b, err := json.Marshal(savedRun{h, snap}); err == nil {
			_ = os.MkdirAll(r.cfg.ResultsDir, 0o755)
			_ = os.WriteFile(filepath.Join(r.cfg.ResultsDir, fmt.Sprintf("history-%d-w%d-%d.json", sched.Seed, r.worker, r.seq)), b, 0o644)
		}
	}
	if res.ConvergedMS < 0 && len(res.Violations) == 0 {
		res.Violations = append(res.Violations, check.Violation{Invariant: "converged", Detail: fmt.Sprintf("not converged %s after healing", r.cfg.Converge)})
	}
	return res, nil
}

// snapshot reads what the stores hold for one schedule's campaigns and users, directly (not through
// the fault proxies).
func (r *runner) snapshot(ctx context.Context, ids map[string]string, prefix string) (check.Snapshot, error) {
	s := check.Snapshot{Campaigns: map[string]check.CampaignRow{}, Users: map[string]check.UserRow{}, Cache: map[string]check.CacheRow{}}
	list := make([]any, 0, len(ids))
	marks := make([]string, 0, len(ids))
	for _, id := range ids {
		list = append(list, id)
		marks = append(marks, "?")
	}
	in := "(" + strings.Join(marks, ",") + ")"
	rows, err := r.db.QueryContext(ctx, `SELECT id, mode, stock, per_user_limit, status, cost_points, starts_at, ends_at, version, issued
		FROM campaigns WHERE id IN `+in, list...)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var c check.CampaignRow
		if err := rows.Scan(&c.ID, &c.Mode, &c.Stock, &c.PerUserLimit, &c.Status, &c.CostPoints, &c.StartsAt, &c.EndsAt, &c.Version, &c.Issued); err != nil {
			rows.Close()
			return s, err
		}
		s.Campaigns[c.ID] = c
	}
	rows.Close()
	rows, err = r.db.QueryContext(ctx, `SELECT id, campaign_id, user_id, request_id, cost_points, granted_at FROM claims WHERE campaign_id IN `+in, list...)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var c check.ClaimRow
		if err := rows.Scan(&c.ID, &c.Campaign, &c.User, &c.Request, &c.CostPoints, &c.GrantedAt); err != nil {
			rows.Close()
			return s, err
		}
		s.Claims = append(s.Claims, c)
	}
	rows.Close()
	rows, err = r.db.QueryContext(ctx, `SELECT id, points_credited, points_debited FROM users WHERE id LIKE ?`, prefix+"-%")
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var u check.UserRow
		if err := rows.Scan(&u.ID, &u.Credited, &u.Debited); err != nil {
			rows.Close()
			return s, err
		}
		s.Users[u.ID] = u
	}
	rows.Close()
	rows, err = r.db.QueryContext(ctx, `SELECT user_id, kind, ref, amount FROM points_entries WHERE user_id LIKE ?`, prefix+"-%")
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var p check.PointsEntry
		if err := rows.Scan(&p.User, &p.Kind, &p.Ref, &p.Amount); err != nil {
			rows.Close()
			return s, err
		}
		s.Points = append(s.Points, p)
	}
	rows.Close()
	for _, id := range ids {
		c, err := r.cache.Campaign(ctx, id)
		if err != nil {
			return s, err
		}
		s.Cache[id] = check.CacheRow{Present: c.Present, Version: c.Version, Issued: c.Issued, Remaining: c.Remaining}
	}
	return s, nil
}

// shrink removes faults one at a time while the violation still shows, so what is left is a minimal
// schedule that reproduces it. Each candidate runs twice, since the workload's timing varies.
func (r *runner) shrink(ctx context.Context, sched Schedule, invariant string) Schedule {
	r.say("    shrinking %s", sched)
	reproduces := func(s Schedule) bool {
		for range 2 {
			res, err := r.runOne(ctx, s)
			if err != nil {
				return false
			}
			for _, v := range res.Violations {
				if v.Invariant == invariant {
					return true
				}
			}
		}
		return false
	}
	// Bounded: a schedule that never converges costs the convergence limit per run.
	deadline := time.Now().Add(4 * time.Minute)
	for i := 0; i < len(sched.Faults) && len(sched.Faults) > 1 && time.Now().Before(deadline); {
		cand := Schedule{Seed: sched.Seed, Faults: append(append([]Fault{}, sched.Faults[:i]...), sched.Faults[i+1:]...)}
		if reproduces(cand) {
			sched = cand
			continue
		}
		i++
	}
	return sched
}

// deadLetters counts what the triggers dead-lettered and why (sync_failures).
func (r *runner) deadLetters(ctx context.Context) (map[string]int, map[string]int) {
	counts := map[string]int{}
	for _, t := range [][2]string{{"cachesync", "rule-changes"}, {"ledger", "grants"}} {
		if r.s.BrokerEngine == nil {
			break // Apache RocketMQ: its dead-letter topics are read with its own tools, not counted here
		}
		counts[t[0]+"/"+t[1]] = r.s.BrokerEngine.Stats(r.s.Emulator.DLQTopic(t[0], t[1])).Messages
	}
	why := map[string]int{}
	rows, err := r.db.QueryContext(ctx, `SELECT entity, LEFT(reason, 120), COUNT(*) FROM sync_failures GROUP BY entity, LEFT(reason, 120)`)
	if err != nil {
		why["(could not read sync_failures: "+err.Error()+")"] = 1
		return counts, why
	}
	defer rows.Close()
	for rows.Next() {
		var entity, reason string
		var n int
		if rows.Scan(&entity, &reason, &n) == nil {
			why[entity+": "+reason] = n
		}
	}
	return counts, why
}

func printReport(cfg Config, rep Report) {
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, format+"\n", args...) }
	say("")
	say("==> fault suite report (%s, redis: %s, broker: %s, first seed %d)", rep.Elapsed, rep.Redis, rep.Broker, rep.Seed)
	say("operations: %d, claims granted: %d", rep.Operations, rep.ClaimsGranted)
	kinds := make([]string, 0, len(rep.FaultsByKind))
	for k, n := range rep.FaultsByKind {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	say("faults injected: %s", strings.Join(kinds, " "))
	say("convergence after healing: median %d ms, worst %d ms, not converged within %s: %d", rep.MedianConverge, rep.WorstConvergeMS, cfg.Converge, rep.NotConverged)
	say("dead-lettered: %v; reasons: %v", rep.DeadLettered, rep.DeadLetterWhy)
	if rep.NotApplied > 0 {
		say("faults that could not be applied (see each schedule's inject_errors): %d", rep.NotApplied)
	}
	if rep.Inconclusive > 0 {
		say("linearizability checks that ran out of budget (not counted as violations): %d", rep.Inconclusive)
	}
	for inv, n := range rep.byInvariant {
		say("violations of %s: %d", inv, n)
	}
	say("schedules: %d, violations: %d", rep.Schedules, rep.Violations)
}

func writeReport(dir string, rep Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	name := filepath.Join(dir, "latest.json")
	return os.WriteFile(name, b, 0o644)
}

// savedRun is a failing schedule's history and stores, as runOne writes them.
type savedRun struct {
	History  check.History  `json:"history"`
	Snapshot check.Snapshot `json:"snapshot"`
}

// Recheck runs the checks again over saved runs (history-*.json), so a change to a check can be tried
// on exactly the runs that failed.
func Recheck(files []string, out io.Writer) (int, error) {
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return total, err
		}
		var d savedRun
		if err := json.Unmarshal(b, &d); err != nil {
			return total, fmt.Errorf("%s: %w", f, err)
		}
		d.History.ClaimID, d.History.Settle, d.History.ReservationHold = domain.ClaimID, settle, reservationHold
		d.History.HomeBucket = domain.HomeBucket
		v := check.Check(d.History, d.Snapshot, 20*time.Second)
		fmt.Fprintf(out, "%s: %d violations\n", filepath.Base(f), len(v))
		for _, x := range v {
			fmt.Fprintf(out, "    %s\n", x)
		}
		total += len(v)
	}
	return total, nil
}
