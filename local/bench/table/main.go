// Command table is `make bench`: it starts a private local stack (stack.Start, as `make run` does,
// with the compiled functions from dist/), measures each of our figures beside a reference measured
// in the same run, prints one table and writes it to local/bench/results/latest.json:
//
//	go run ./local/bench/table [-d 10s] [-c 64] [-users 400] [-patches 1000] [-out local/bench/results]
//
// Every load generator is a process of its own (local/bench/load, local/bench/claim, redis-benchmark),
// bounded in calls and time, on loopback. Ratios are what count: the machine is shared, so absolute
// figures move from run to run while two figures taken side by side move together.
//
// The stacks run without Toxiproxy and with the RocketMQ clients in plaintext (-toxiproxy puts both
// back): Toxiproxy exists to inject faults, production has nothing between the functions and their
// services, and it cost a quarter of the stack's CPU; TLS on loopback another 6 %.
//
// While the HTTP grant row runs, the stack process (FC emulator, broker emulator) is
// CPU-profiled into results/stack-cpu.pprof, with the top of it in results/stack-cpu-top.txt.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/benefit-issuance/benefits/local/fc"
	"github.com/benefit-issuance/benefits/local/fctemplate"
	"github.com/benefit-issuance/benefits/local/rocketmq"
	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Row is one line of the table and of latest.json. Ours, Reference and Ratio are null when the row
// was not measured; Detail gives the context of the figures (percentiles, outcomes, CPU).
type Row struct {
	Name      string   `json:"name"`
	Ours      *float64 `json:"ours"`
	Reference *float64 `json:"reference"`
	Ratio     *float64 `json:"ratio"`
	Goal      string   `json:"goal"`
	Met       bool     `json:"met"`
	Detail    string   `json:"detail,omitempty"`
}

// buildFlags are the Makefile's GOFLAGS_BUILD: a function built here is built as make build builds it.
var buildFlags = []string{"-trimpath", "-ldflags=-s -w", "-tags", "grpcnotrace"}

func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

type bench struct {
	root, out, tools string
	d                time.Duration
	c, users         int
	patches          int
	only             string
	// fnProfile: the claim function is rebuilt with a CPU profiler (go build -overlay) and the stack
	// runs from fnRoot, a copy of the root whose dist/claim is that build.
	fnProfile bool
	fnRoot    string
	// faultProxy runs the stacks with Toxiproxy in front of MySQL, Redis and the broker, as the fault
	// suite does; by default they run without it, as production does (it only injects faults).
	faultProxy bool
	grantHTTP  *side // the HTTP grant row's figures, for the instance-seconds row
	s          *stack.Stack
	operator   string
	client     *stack.Client
	rdb        *redis.Client
	rows       []Row
	t0         time.Time
}

func main() {
	d := flag.Duration("d", 10*time.Second, "duration of each measured claim load")
	c := flag.Int("c", 64, "HTTP clients and library goroutines")
	users := flag.Int("users", 400, "distinct users of the claim loads")
	patches := flag.Int("patches", 1000, "rule changes through HTTP for the rule commit row")
	out := flag.String("out", "", "results folder (default <repo>/local/bench/results)")
	fnProfile := flag.Bool("profile-functions", false, "also CPU-profile the claim function's instances (a build of it with a profiler added; its figures are then not make bench's)")
	only := flag.String("only", "", "run only the steps whose title contains this (e.g. \"cold\", \"HTTP\", \"broker\")")
	faultProxy := flag.Bool("toxiproxy", false, "run the stacks as the fault suite does: Toxiproxy between the functions and MySQL, Redis, the broker (production has none), and TLS to the broker")
	flag.Parse()
	root, err := stack.FindRoot()
	if err != nil {
		fatal(err)
	}
	if *out == "" {
		*out = filepath.Join(root, "local", "bench", "results")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	tools, err := os.MkdirTemp("", "benefits-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tools)
	b := &bench{root: root, out: *out, tools: tools, d: *d, c: *c, users: *users, patches: *patches, only: *only, fnProfile: *fnProfile, faultProxy: *faultProxy, t0: time.Now()}
	if err := b.run(); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (b *bench) progress(format string, a ...any) {
	fmt.Printf("[%5.0fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, a...))
}

func (b *bench) run() error {
	ctx := context.Background()
	b.progress("building the load generators and the do-nothing function into %s", b.tools)
	if err := b.buildTools(ctx); err != nil {
		return err
	}
	b.fnRoot = b.root
	var fnEnv map[string]string
	if b.fnProfile {
		var err error
		if fnEnv, err = b.profiledRoot(ctx); err != nil {
			return err
		}
	}
	// A profile left by an earlier run must not pass for this run's.
	for _, f := range []string{"stack-cpu.pprof", "stack-cpu-top.txt", "stack-cpu-top-cum.txt", "latest.json"} {
		os.Remove(filepath.Join(b.out, f))
	}
	logPath := filepath.Join(b.out, "stack.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	b.progress("starting a private stack (MariaDB, Redis, broker, FC emulator; Toxiproxy: %t); its log: %s", b.faultProxy, logPath)
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s, err := stack.Start(sctx, stack.Options{
		Root: b.fnRoot, HTTPAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", ToxiproxyAddr: "127.0.0.1:0", NoFaultProxy: !b.faultProxy, PlaintextBroker: !b.faultProxy,
		// The library reference runs without the per-user rate limit (400 users × 20/s would cap it at
		// 8,000 claims/s and measure the limiter), so the functions run without it too.
		Env:    withEnv(map[string]string{"CLAIM_RATE_LIMIT": "0"}, fnEnv),
		Output: logFile, Logger: slog.New(slog.NewTextHandler(logFile, nil)),
	})
	cancel()
	if err != nil {
		return err
	}
	defer s.Close()
	b.s = s
	b.client = stack.NewClient(s.HTTP)
	b.operator, err = auth.Issue(s.JWTSecret, "ops-bench", auth.RoleOperator, 2*time.Hour, time.Now())
	if err != nil {
		return err
	}
	b.rdb = redis.NewClient(&redis.Options{Addr: s.RedisAddr})
	defer b.rdb.Close()
	// A fresh Redis is not trusted until the rebuild has run (claims answer 503).
	if r, err := b.client.Do("POST", "/_local/timers/timer/cache-rebuild", "", nil); err != nil || r.Status != 200 {
		return fmt.Errorf("cache rebuild: %v %d %s", err, r.Status, r.Raw)
	}

	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		// Cold starts first, while no trigger is busy with a backlog the claim rows leave behind.
		{"cold starts and binary sizes (row 4)", b.coldStartRows},
		{"claims through HTTP vs the library (rows 1-2, with the stack's CPU profile)", b.claimRows},
		{"library claim path vs redis-benchmark (row 3)", b.libraryRows},
		{"rule commit → applied in Redis (row 5)", b.ruleRows},
		{"broker produce → receive → ack (row 6)", b.brokerRows},
		{"instance-seconds of claim: as deployed vs on go1 (a second stack)", b.instanceRows},
		{"Redis Cluster: claims beside standalone, one hot campaign's calls per master with 1 and 8 buckets", b.clusterRows},
	}
	for _, st := range steps {
		if b.only != "" && !strings.Contains(st.name, b.only) {
			continue
		}
		b.progress("==> %s", st.name)
		if waited, quiet := b.quiesce(90 * time.Second); !quiet {
			b.progress("  the functions were still busy after %s; measuring anyway", waited.Round(time.Second))
		} else if waited > 1500*time.Millisecond {
			b.progress("  waited %s for the functions to go idle (the ledger's backlog)", waited.Round(100*time.Millisecond))
		}
		if err := st.f(ctx); err != nil {
			// A failed step leaves its rows unmeasured rather than stopping the table.
			b.progress("FAILED: %v", err)
			b.rows = append(b.rows, Row{Name: st.name, Goal: "-", Detail: "failed in this run: " + err.Error()})
		}
	}
	if _, err := os.Stat(filepath.Join(b.out, "stack-cpu.pprof")); err == nil {
		if err := b.profileTop(filepath.Join(b.out, "stack-cpu.pprof")); err != nil {
			b.progress("pprof -top: %v", err)
		}
	}
	if b.fnProfile {
		if err := b.functionProfileTop(); err != nil {
			b.progress("claim function profiles: %v", err)
		}
	}
	b.issueRows(ctx)
	b.print()
	return b.write()
}

// buildTools compiles the load generators and the do-nothing function once, so that no measured
// process includes a compile.
func (b *bench) buildTools(ctx context.Context) error {
	builds := []struct {
		out, pkg string
		fn       bool
	}{
		{"load", "./local/bench/load", false},
		{"claimbench", "./local/bench/claim", false},
		{"noop/main", "./local/bench/noop", true},
	}
	for _, bl := range builds {
		args := []string{"build", "-o", filepath.Join(b.tools, bl.out)}
		if bl.fn { // as make build builds the functions
			args = append(args, buildFlags...)
		}
		cmd := exec.CommandContext(ctx, "go", append(args, bl.pkg)...)
		cmd.Dir = b.root
		if bl.fn {
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", bl.pkg, err, out)
		}
	}
	return nil
}

func withEnv(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// profilerSource is added to the claim function's package by -profile-functions: each instance
// CPU-profiles itself from its start for BENCH_CPUPROFILE_SECONDS into BENCH_CPUPROFILE_DIR.
const profilerSource = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"
)

func init() {
	dir := os.Getenv("BENCH_CPUPROFILE_DIR")
	secs, _ := strconv.Atoi(os.Getenv("BENCH_CPUPROFILE_SECONDS"))
	if dir == "" || secs <= 0 {
		return
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("claim-%d.pprof", os.Getpid())))
	if err != nil {
		return
	}
	if pprof.StartCPUProfile(f) != nil {
		f.Close()
		return
	}
	go func() {
		time.Sleep(time.Duration(secs) * time.Second)
		pprof.StopCPUProfile()
		f.Close()
	}()
}
`

// profiledRoot builds a root for the stack: template.yml and every function's dist folder linked
// from the real root, except dist/claim, built with profilerSource added. It returns the
// environment that turns the profiler on.
func (b *bench) profiledRoot(ctx context.Context) (map[string]string, error) {
	root := filepath.Join(b.tools, "root")
	profDir := filepath.Join(b.out, "claim-profiles")
	os.RemoveAll(profDir)
	if err := os.MkdirAll(filepath.Join(root, "dist", "claim"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(profDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(filepath.Join(b.root, "template.yml"), filepath.Join(root, "template.yml")); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(b.root, "dist"))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "claim" {
			if err := os.Symlink(filepath.Join(b.root, "dist", e.Name()), filepath.Join(root, "dist", e.Name())); err != nil {
				return nil, err
			}
		}
	}
	src := filepath.Join(b.tools, "zz_benchprofile.go")
	if err := os.WriteFile(src, []byte(profilerSource), 0o644); err != nil {
		return nil, err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(b.root, "functions", "claim", "zz_benchprofile.go"): src}})
	if err != nil {
		return nil, err
	}
	overlayPath := filepath.Join(b.tools, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		return nil, err
	}
	args := append(append([]string{"build", "-overlay", overlayPath}, buildFlags...), "-o", filepath.Join(root, "dist", "claim", "main"), "./functions/claim")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the profiled claim function: %v\n%s", err, out)
	}
	b.fnRoot = root
	b.progress("claim function built with a CPU profiler: each instance profiles its first 20 s into %s", profDir)
	return map[string]string{"BENCH_CPUPROFILE_DIR": profDir, "BENCH_CPUPROFILE_SECONDS": "20"}, nil
}

// Report is local/bench/load's output.
type Report struct {
	Calls       int            `json:"calls"`
	Seconds     float64        `json:"seconds"`
	Outcomes    map[string]int `json:"outcomes"`
	Errors      int            `json:"errors"`
	FirstErr    string         `json:"first_error"`
	P50MS       float64        `json:"p50_ms"`
	P99MS       float64        `json:"p99_ms"`
	SendSeconds float64        `json:"send_seconds"`
	// LoadCPU is the CPU seconds the load process itself took (user + system), from its rusage.
	LoadCPU float64 `json:"-"`
}

func (r Report) perSec(outcome string) float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Outcomes[outcome]) / r.Seconds
}

func (r Report) String() string {
	keys := make([]string, 0, len(r.Outcomes))
	for k := range r.Outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Outcomes[k]))
	}
	s := fmt.Sprintf("%d calls in %.1f s (%s), p50 %.2f ms, p99 %.2f ms", r.Calls, r.Seconds, strings.Join(parts, ", "), r.P50MS, r.P99MS)
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d errors (first: %s)", r.Errors, r.FirstErr)
	}
	return s
}

// load runs local/bench/load with args and decodes its report.
func (b *bench) load(ctx context.Context, args ...string) (Report, error) {
	cctx, cancel := context.WithTimeout(ctx, b.d+3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, filepath.Join(b.tools, "load"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Report{}, fmt.Errorf("load %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return Report{}, fmt.Errorf("load: %v in %q", err, stdout.String())
	}
	r.LoadCPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return r, nil
}

func (b *bench) createCampaign(ctx context.Context, stock, perUser int64) (string, error) {
	now := time.Now().UTC()
	r, err := b.client.Do("POST", "/v1/campaigns", b.operator, map[string]any{
		"name": "bench", "benefit": map[string]any{"type": "coupon", "amount": 500},
		"audience": map[string]any{"segment": "all"}, "cost_points": 0, "mode": "claim",
		"starts_at": now.Add(-time.Hour).Format(time.RFC3339), "ends_at": now.Add(24 * time.Hour).Format(time.RFC3339),
		"stock": stock, "per_user_limit": perUser, "status": "active",
	})
	if err != nil {
		return "", err
	}
	id, _ := r.Field("campaign", "id").(string)
	if r.Status != http.StatusCreated || id == "" {
		return "", fmt.Errorf("create campaign: %d %s", r.Status, r.Raw)
	}
	// The rules function waits a bounded time for the cache; claims need the campaign there.
	cache := rediscache.New(b.rdb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cache.Campaign(ctx, id); err == nil {
			return id, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("campaign %s never reached Redis", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claimRows: granted and refused claims per second through the HTTP trigger at c clients, beside
// the library claim path at c goroutines, each load its own process, on the same Redis server (the
// library on its own logical database with its own campaigns).
func (b *bench) claimRows(ctx context.Context) error {
	grantID, err := b.createCampaign(ctx, 1_000_000_000, 1_000_000)
	if err != nil {
		return err
	}
	soldID, err := b.createCampaign(ctx, 0, 1_000_000)
	if err != nil {
		return err
	}
	c, users := strconv.Itoa(b.c), strconv.Itoa(b.users)
	httpArgs := func(campaign, rid, dur string) []string {
		return []string{"-mode", "http", "-url", b.s.HTTP, "-secret", b.s.JWTSecret, "-campaign", campaign,
			"-c", c, "-users", users, "-d", dur, "-rid", rid}
	}
	libArgs := func(campaign, rid, dur string, reset bool) []string {
		return []string{"-mode", "lib", "-redis", b.s.RedisAddr, "-db", "15", "-campaign", campaign,
			"-c", c, "-users", users, "-d", dur, "-rid", rid, "-reset=" + strconv.FormatBool(reset)}
	}
	b.progress("warming up: HTTP 3 s (every instance of the pool started) and the library 2 s")
	if r, err := b.load(ctx, httpArgs(grantID, "warm-", "3s")...); err != nil {
		return err
	} else {
		b.progress("  warm-up HTTP: %s", r)
	}
	if _, err := b.load(ctx, libArgs("bench-grant", "warm-", "2s", true)...); err != nil {
		return err
	}

	measure := func(what string, args []string, profile string, sample bool) (side, error) {
		// A grant row leaves the ledger a backlog to drain; no row is measured while it does.
		if waited, quiet := b.quiesce(90 * time.Second); !quiet {
			b.progress("  the functions were still busy after %s; measuring anyway", waited.Round(time.Second))
		} else if waited > 1500*time.Millisecond {
			b.progress("  waited %s for the functions to go idle (the ledger's backlog)", waited.Round(100*time.Millisecond))
		}
		before := b.cpuSnapshot(ctx)
		var pf *os.File
		if profile != "" {
			var err error
			if pf, err = os.Create(profile); err != nil {
				return side{}, err
			}
			if err := pprof.StartCPUProfile(pf); err != nil {
				pf.Close()
				return side{}, err
			}
		}
		var inst instanceSampler
		if sample {
			inst.start(b, "claim")
		}
		r, err := b.load(ctx, args...)
		if sample {
			inst.stop()
		}
		if pf != nil {
			pprof.StopCPUProfile()
			pf.Close()
		}
		if err != nil {
			return side{}, err
		}
		after := b.cpuSnapshot(ctx)
		cpu := after.since(before, r.Seconds)
		// CPU per call of everything but the load process, and of the load process.
		var used float64
		for k, v := range after {
			used += v - before[k]
		}
		if r.Calls > 0 {
			cpu += fmt.Sprintf("; %.3f ms CPU per call in these, %.3f ms in the load process (%.0f%% of one core)",
				1000*used/float64(r.Calls), 1000*r.LoadCPU/float64(r.Calls), 100*r.LoadCPU/r.Seconds)
		}
		b.progress("  %s: %s; CPU %s", what, r, cpu)
		return side{r, cpu, inst}, nil
	}
	// Each side runs in two halves, alternately (HTTP, library, HTTP, library), so that a burst of
	// another user's load on the shared machine falls on both sides rather than on one.
	half := b.d / 2
	pair := func(what, httpCampaign, libCampaign, rid, profile string) (h, l side, err error) {
		for k := range 2 {
			hp := ""
			if k == 0 {
				hp = profile
			}
			hk, err := measure(fmt.Sprintf("HTTP %s, half %d", what, k+1), httpArgs(httpCampaign, fmt.Sprintf("%s%d-", rid, k), half.String()), hp, profile != "")
			if err != nil {
				return h, l, err
			}
			lk, err := measure(fmt.Sprintf("library %s, half %d", what, k+1), libArgs(libCampaign, fmt.Sprintf("%s%d-", rid, k), half.String(), true), "", false)
			if err != nil {
				return h, l, err
			}
			h, l = h.add(hk), l.add(lk)
		}
		return h, l, nil
	}
	profile := filepath.Join(b.out, "stack-cpu.pprof")
	b.progress("granted: HTTP %d clients and the library %d goroutines, %s each in two alternating halves (the first HTTP half profiled)", b.c, b.c, b.d)
	hg, lg, err := pair("grant", grantID, "bench-grant", "g", profile)
	if err != nil {
		return err
	}
	b.progress("refused (sold out): HTTP %d clients and the library %d goroutines, %s each in two alternating halves", b.c, b.c, b.d)
	hs, ls, err := pair("sold out", soldID, "bench-soldout", "s", "")
	if err != nil {
		return err
	}
	b.grantHTTP = &hg
	for _, p := range []struct {
		what, outcome string
		h, l          side
	}{{"granted", "granted", hg, lg}, {"refused (sold out)", "sold_out", hs, ls}} {
		o, r := p.h.r.perSec(p.outcome), p.l.r.perSec(p.outcome)
		q := ratio(o, r)
		b.rows = append(b.rows, Row{
			Name: fmt.Sprintf("%s claims/s, HTTP trigger %d clients vs Cache.Claim %d goroutines", p.what, b.c, b.c),
			Ours: num(o), Reference: num(r), Ratio: num(q), Goal: "ratio ≥ 0.25", Met: q >= 0.25,
			Detail: fmt.Sprintf("HTTP: %s; CPU %s | library: %s; CPU %s", p.h.r, p.h.cpu, p.l.r, p.l.cpu),
		}, Row{
			Name: fmt.Sprintf("%s claim p99 ms, HTTP trigger vs Cache.Claim", p.what),
			Ours: num(p.h.r.P99MS), Reference: num(p.l.r.P99MS), Ratio: num(ratio(p.h.r.P99MS, p.l.r.P99MS)),
			Goal: "p99 ≤ 25 ms", Met: p.h.r.Calls > 0 && p.h.r.P99MS <= 25,
			Detail: fmt.Sprintf("p50 %.2f ms vs %.2f ms (p50 and p99: the larger of the two halves')", p.h.r.P50MS, p.l.r.P50MS),
		})
	}
	return nil
}

// instanceRows: instance-seconds of the claim function per 1,000 granted claims, as template.yml
// deploys it (the HTTP grant row: instances alive, since an instance that takes many claims at once
// is billed while it has any), beside the same on go1, one claim per instance (a second stack whose
// template.yml has claim on go1: invocation-seconds, what go1 bills when FC adds an instance per
// claim in flight; the emulator's pool of 4 would otherwise queue them).
func (b *bench) instanceRows(ctx context.Context) error {
	hg := b.grantHTTP
	if hg == nil || hg.inst.samples == 0 || hg.r.Outcomes["granted"] == 0 {
		return errors.New("the HTTP grant row did not run")
	}
	g := hg.r.Outcomes["granted"]
	ours := hg.inst.aliveSeconds / float64(g) * 1000
	row := Row{
		Name: fmt.Sprintf("instance-seconds of claim per 1,000 granted claims, HTTP %d clients: as deployed by template.yml vs one claim per instance (go1)", b.c),
		Ours: num(ours), Goal: "ratio ≤ 0.2",
	}
	detail := fmt.Sprintf("as deployed: %.1f instances alive on average, %.1f instance-seconds alive (%.1f invocation-seconds) over %d granted claims in the HTTP grant row",
		hg.inst.aliveSeconds/hg.r.Seconds, hg.inst.aliveSeconds, hg.inst.busySeconds, g)
	ref, refDetail, err := b.go1Reference(ctx)
	if err != nil {
		row.Detail = detail + "; the go1 reference failed: " + err.Error()
		b.rows = append(b.rows, row)
		return nil
	}
	q := ratio(ours, ref)
	row.Reference, row.Ratio, row.Met = num(ref), num(q), q <= 0.2
	row.Detail = detail + " | " + refDetail
	b.rows = append(b.rows, row)
	return nil
}

// go1Reference starts a second private stack whose template.yml has the claim function on go1 with
// one claim per instance, loads it as the HTTP grant row does for half the time, and returns its
// invocation-seconds per 1,000 granted claims.
func (b *bench) go1Reference(ctx context.Context) (float64, string, error) {
	data, err := os.ReadFile(filepath.Join(b.root, "template.yml"))
	if err != nil {
		return 0, "", err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return 0, "", err
	}
	props := yamlPath(&doc, "resources", "claim", "props")
	if props == nil {
		return 0, "", errors.New("template.yml has no resources.claim.props")
	}
	yamlSet(props, "runtime", "go1")
	yamlSet(props, "instanceConcurrency", "1")
	yamlDelete(props, "customRuntimeConfig")
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return 0, "", err
	}
	if _, err := fctemplate.Parse(out); err != nil {
		return 0, "", fmt.Errorf("template with claim on go1: %w", err)
	}
	root := filepath.Join(b.tools, "go1root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return 0, "", err
	}
	if err := os.WriteFile(filepath.Join(root, "template.yml"), out, 0o644); err != nil {
		return 0, "", err
	}
	if err := os.Symlink(filepath.Join(b.root, "dist"), filepath.Join(root, "dist")); err != nil {
		return 0, "", err
	}
	logFile, err := os.Create(filepath.Join(b.out, "stack-go1.log"))
	if err != nil {
		return 0, "", err
	}
	defer logFile.Close()
	b.progress("  starting a second private stack with the claim function on go1 (its log: %s)", logFile.Name())
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	s2, err := stack.Start(sctx, stack.Options{
		Root: root, HTTPAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", ToxiproxyAddr: "127.0.0.1:0", NoFaultProxy: !b.faultProxy, PlaintextBroker: !b.faultProxy,
		Env: map[string]string{"CLAIM_RATE_LIMIT": "0"}, Output: logFile, Logger: slog.New(slog.NewTextHandler(logFile, nil)),
	})
	cancel()
	if err != nil {
		return 0, "", err
	}
	defer s2.Close()
	// The helpers below work on b's stack: point them at the second one for the while.
	saved := *b
	defer func() {
		b.s, b.client, b.operator, b.rdb, b.fnRoot = saved.s, saved.client, saved.operator, saved.rdb, saved.fnRoot
	}()
	b.s, b.client, b.fnRoot = s2, stack.NewClient(s2.HTTP), root
	if b.operator, err = auth.Issue(s2.JWTSecret, "ops-bench", auth.RoleOperator, time.Hour, time.Now()); err != nil {
		return 0, "", err
	}
	b.rdb = redis.NewClient(&redis.Options{Addr: s2.RedisAddr})
	defer b.rdb.Close()
	if r, err := b.client.Do("POST", "/_local/timers/timer/cache-rebuild", "", nil); err != nil || r.Status != 200 {
		return 0, "", fmt.Errorf("cache rebuild: %v %d %s", err, r.Status, r.Raw)
	}
	id, err := b.createCampaign(ctx, 1_000_000_000, 1_000_000)
	if err != nil {
		return 0, "", err
	}
	args := func(rid, d string) []string {
		return []string{"-mode", "http", "-url", s2.HTTP, "-secret", s2.JWTSecret, "-campaign", id,
			"-c", strconv.Itoa(b.c), "-users", strconv.Itoa(b.users), "-d", d, "-rid", rid}
	}
	if _, err := b.load(ctx, args("warm-", "3s")...); err != nil {
		return 0, "", err
	}
	b.quiesce(90 * time.Second)
	var inst instanceSampler
	inst.start(b, "claim")
	r, err := b.load(ctx, args("g-", (b.d/2).String())...)
	inst.stop()
	if err != nil {
		return 0, "", err
	}
	g := r.Outcomes["granted"]
	if g == 0 || inst.samples == 0 {
		return 0, "", fmt.Errorf("no granted claims on go1: %s", r)
	}
	b.progress("  go1: %s; %.1f invocation-seconds busy, %.1f instance-seconds alive", r, inst.busySeconds, inst.aliveSeconds)
	return inst.busySeconds / float64(g) * 1000, fmt.Sprintf("go1 (a second stack, %s of HTTP grants): %d granted, %.1f invocation-seconds busy (what go1 bills with an instance per claim in flight), %.1f instance-seconds alive in the emulator's pool of 4",
		b.d/2, g, inst.busySeconds, inst.aliveSeconds), nil
}

// yamlPath walks mapping keys from a document node.
func yamlPath(n *yaml.Node, keys ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// yamlSet sets a scalar under a mapping node, adding the key when missing.
func yamlSet(m *yaml.Node, key, value string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: value}
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
}

func yamlDelete(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// side is one side of a claim row, possibly the sum of several runs.
type side struct {
	r    Report
	cpu  string
	inst instanceSampler
}

// add sums two runs: counts and times add up; p50 and p99 are the larger of the two runs' (an upper
// bound of the whole's).
func (a side) add(b side) side {
	if a.r.Outcomes == nil {
		return b
	}
	out := map[string]int{}
	for k, v := range a.r.Outcomes {
		out[k] += v
	}
	for k, v := range b.r.Outcomes {
		out[k] += v
	}
	r := Report{Calls: a.r.Calls + b.r.Calls, Seconds: a.r.Seconds + b.r.Seconds, Outcomes: out, Errors: a.r.Errors + b.r.Errors,
		FirstErr: a.r.FirstErr, P50MS: max(a.r.P50MS, b.r.P50MS), P99MS: max(a.r.P99MS, b.r.P99MS), LoadCPU: a.r.LoadCPU + b.r.LoadCPU}
	if r.FirstErr == "" {
		r.FirstErr = b.r.FirstErr
	}
	inst := instanceSampler{aliveSeconds: a.inst.aliveSeconds + b.inst.aliveSeconds, busySeconds: a.inst.busySeconds + b.inst.busySeconds,
		samples: a.inst.samples + b.inst.samples}
	return side{r: r, cpu: a.cpu + " / " + b.cpu, inst: inst}
}

// quiesce waits until no function of the stack has had an invocation in flight for a whole second
// (polled every 50 ms), or until max; it returns how long it waited and whether they went idle.
func (b *bench) quiesce(max time.Duration) (time.Duration, bool) {
	start := time.Now()
	idleSince := time.Time{}
	for time.Since(start) < max {
		busy := 0
		for _, f := range b.s.Template.Functions() {
			busy += b.s.Emulator.InFlight(f.FunctionName)
		}
		switch {
		case busy > 0:
			idleSince = time.Time{}
		case idleSince.IsZero():
			idleSince = time.Now()
		case time.Since(idleSince) >= time.Second:
			return time.Since(start), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), false
}

// profileTop writes `go tool pprof -top` of the profile beside it, by flat and by cumulative time,
// and prints the first lines of each.
func (b *bench) profileTop(profile string) error {
	base := strings.TrimSuffix(profile, ".pprof")
	for _, v := range []struct{ file, flag, what string }{{"-top.txt", "", "flat"}, {"-top-cum.txt", "-cum", "cumulative"}} {
		args := []string{"tool", "pprof", "-top", "-nodecount=60", "-symbolize=none"}
		if v.flag != "" {
			args = append(args, v.flag)
		}
		out, err := exec.Command("go", append(args, profile)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if err := os.WriteFile(base+v.file, out, 0o644); err != nil {
			return err
		}
		lines := strings.Split(string(out), "\n")
		if v.flag == "" {
			b.profileShares(profile, lines)
		}
		b.progress("  stack process CPU profile during the HTTP grant row, top 25 by %s time (all of it: %s):", v.what, base+v.file)
		for _, l := range lines[min(len(lines), 4):min(len(lines), 31)] {
			if l != "" {
				fmt.Println("      " + l)
			}
		}
	}
	return nil
}

// functionProfileTop merges the claim instances' profiles and writes and prints their top.
func (b *bench) functionProfileTop() error {
	files, err := filepath.Glob(filepath.Join(b.out, "claim-profiles", "claim-*.pprof"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no profiles (%v)", err)
	}
	for _, v := range []struct{ file, flag, what string }{{"claim-cpu-top.txt", "-flat", "flat"}, {"claim-cpu-top-cum.txt", "-cum", "cumulative"}} {
		args := append([]string{"tool", "pprof", "-top", "-nodecount=60", "-symbolize=none", v.flag}, files...)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		path := filepath.Join(b.out, v.file)
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return err
		}
		lines := strings.Split(string(out), "\n")
		b.progress("  claim function CPU profile, %d instances' first 20 s merged, top 25 by %s time (all of it: %s):", len(files), v.what, path)
		for _, l := range lines[min(len(lines), 4):min(len(lines), 31)] {
			if l != "" {
				fmt.Println("      " + l)
			}
		}
	}
	return nil
}

// profileShares prints the share of the profile's samples whose stacks pass through each part of
// the stack process (a sample may count in more than one part).
func (b *bench) profileShares(profile string, top []string) {
	total := ""
	for _, l := range top {
		if strings.HasPrefix(strings.TrimSpace(l), "Duration:") {
			total = strings.TrimSpace(l)
		}
	}
	b.progress("  stack process CPU by part during the HTTP grant row (%s):", total)
	for _, part := range []struct{ name, focus string }{
		{"FC emulator with its net/http servers (HTTP triggers, runtime API)", `benefits/local/fc\.|net/http\.\(\*conn\)\.serve`},
		{"Toxiproxy (the functions' links to Redis, MySQL, the broker)", `toxiproxy`},
		{"broker emulator with its gRPC server", `benefits/local/rocketmq\.|grpc\.\(\*Server\)|transport\.\(\*http2Server\)`},
		{"RocketMQ clients of the FC triggers (gRPC client)", `rocketmq-clients|transport\.\(\*http2Client\)|grpc\.\(\*ClientConn\)|grpc\.\(\*clientStream\)|grpc\.invoke`},
		{"TLS", `crypto/tls`},
		{"system calls", `syscall\.`},
		{"garbage collector", `runtime\.gcBgMarkWorker`},
	} {
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", "-symbolize=none", "-focus="+part.focus, profile).CombinedOutput()
		share := "?"
		if err == nil {
			for _, l := range strings.Split(string(out), "\n") {
				// "Showing nodes accounting for 0.41s, 14.34% of 2.86s total" with the focus applied
				if i := strings.Index(l, "Showing nodes accounting for "); i >= 0 && strings.Contains(l, "% of ") {
					f := strings.Fields(l[i:])
					if len(f) >= 8 {
						share = strings.TrimSuffix(f[4], ",") + " (" + f[5] + " of " + f[7] + ")"
					}
				}
			}
		}
		fmt.Printf("      %-62s %s\n", part.name, share)
	}
}

// libraryClaims is each run's count in the library rows: 200,000 is 4 to 10 s per side at c=64 here.
// At 50,000 a sold-out run lasted one second, and the ratio moved from 0.77 to 0.83 between runs.
const libraryClaims = 200_000

// libraryRows runs local/bench/claim (ours = Cache.Claim beside redis-benchmark EVALSHA of the same
// scripts) at c on the stack's Redis, logical database 15.
func (b *bench) libraryRows(ctx context.Context) error {
	jsonPath := filepath.Join(b.tools, "claim.json")
	cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(b.tools, "claimbench"), "-addr", b.s.RedisAddr, "-db", "15",
		"-c", strconv.Itoa(b.c), "-n", strconv.Itoa(libraryClaims), "-json", jsonPath)
	cmd.Dir = b.root // it finds shared/rediscache/lua from here
	var rows []struct {
		Path       string  `json:"path"`
		C          int     `json:"c"`
		OursPerSec float64 `json:"ours_per_sec"`
		P50MS      float64 `json:"p50_ms"`
		P99MS      float64 `json:"p99_ms"`
		RBMain     float64 `json:"rb_main_per_sec"`
		RBChain    float64 `json:"rb_chain_per_sec"`
		Errors     int     `json:"errors"`
	}
	if err := runJSONTool(cmd, "local/bench/claim", jsonPath, &rows); err != nil {
		return err
	}
	for _, r := range rows {
		goal := 0.6
		if r.Path == "sold_out" {
			goal = 0.8
		}
		q := ratio(r.OursPerSec, r.RBMain)
		b.rows = append(b.rows, Row{
			Name: fmt.Sprintf("library claim path %s claims/s, Cache.Claim vs redis-benchmark EVALSHA claim.lua, c=%d", r.Path, r.C),
			Ours: num(r.OursPerSec), Reference: num(r.RBMain), Ratio: num(q), Goal: fmt.Sprintf("ratio ≥ %.1f", goal),
			Met: r.Errors == 0 && q >= goal,
			Detail: fmt.Sprintf("ours p50 %.2f ms p99 %.2f ms, %d errors; redis-benchmark chain of the scripts ours runs %.0f/s (ours/chain %.2f)",
				r.P50MS, r.P99MS, r.Errors, r.RBChain, ratio(r.OursPerSec, r.RBChain)),
		})
	}
	return nil
}

// coldStartRows: process start → first invocation answered for each function of the stack (its
// instances killed first, so that the invocation starts one), beside the do-nothing function on an
// emulator of its own; the median of three. And the binary sizes.
func (b *bench) coldStartRows(ctx context.Context) error {
	noopDir := filepath.Join(b.tools, "noop")
	tpl, err := fctemplate.Parse([]byte(`edition: 3.0.0
name: bench-noop
access: default
resources:
  noop:
    component: fc3
    props:
      region: local
      functionName: noop
      description: Does nothing; the reference for cold starts.
      runtime: go1
      handler: main
      code: ` + noopDir + `
      memorySize: 128
      timeout: 10
      instanceConcurrency: 1
`))
	if err != nil {
		return fmt.Errorf("noop template: %w", err)
	}
	noopEmu, err := fc.Start(fc.Config{Template: tpl, Root: noopDir, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer noopEmu.Close()
	// A function with an HTTP route is called through it without a token (it answers 401 once it is
	// up); the others are invoked with an empty batch of events, which each answers at once.
	httpPath := map[string]string{}
	for _, r := range b.s.Template.Routes() {
		if _, ok := httpPath[r.FunctionName]; !ok && (len(r.Methods) == 0 || containsFold(r.Methods, "GET")) {
			httpPath[r.FunctionName] = strings.TrimSuffix(strings.TrimSuffix(r.Path, "*"), "/")
		}
	}
	cold := func(e *fc.Emulator, name string) (time.Duration, string) {
		var ds []time.Duration
		var note string
		for range 3 {
			e.KillInstances(name)
			time.Sleep(300 * time.Millisecond) // let the killed instances be reaped
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			var err error
			started := e.InstancesStarted(name)
			t0 := time.Now()
			if path, ok := httpPath[name]; ok && e == b.s.Emulator {
				var req *http.Request
				if req, err = http.NewRequestWithContext(cctx, http.MethodGet, b.s.HTTP+path, nil); err == nil {
					var resp *http.Response
					if resp, err = http.DefaultClient.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusUnauthorized {
							err = fmt.Errorf("GET %s without a token: %d, want 401", path, resp.StatusCode)
						}
					}
				}
				note = "GET " + path + " without a token through the HTTP trigger (401)"
			} else {
				_, err = e.Invoke(cctx, name, []byte("[]"))
				note = "invoked with an empty batch [] through the emulator"
			}
			ds = append(ds, time.Since(t0))
			cancel()
			if err == nil && e.InstancesStarted(name) != started+1 {
				err = fmt.Errorf("%d instances started for the invocation, want 1", e.InstancesStarted(name)-started)
			}
			if err != nil {
				return 0, "failed: " + err.Error()
			}
		}
		slices.Sort(ds)
		return ds[1], note
	}
	ref, refNote := cold(noopEmu, "noop")
	if refNote != "" && strings.HasPrefix(refNote, "failed") {
		return fmt.Errorf("noop cold start %s", refNote)
	}
	refSize := fileMB(filepath.Join(noopDir, "main"))
	b.progress("  do-nothing function: cold start %s, binary %.1f MB", ref.Round(100*time.Microsecond), refSize)
	for _, f := range b.s.Template.Functions() {
		name := f.FunctionName
		d, note := cold(b.s.Emulator, name)
		b.progress("  %s: cold start %s %s", name, d.Round(100*time.Microsecond), note)
		o, r := msOf(d), msOf(ref)
		row := Row{Name: fmt.Sprintf("cold start ms, process start → first invocation answered: %s vs a do-nothing function", name),
			Ours: num(o), Reference: num(r), Ratio: num(ratio(o, r)), Goal: "≤ 100 ms", Met: o <= 100 && !strings.HasPrefix(note, "failed"),
			Detail: "median of 3 (instances killed before each); " + note}
		if strings.HasPrefix(note, "failed") {
			row.Ours, row.Ratio, row.Met = nil, nil, false
		}
		b.rows = append(b.rows, row)
		size := fileMB(filepath.Join(b.root, "dist", name, "main"))
		b.rows = append(b.rows, Row{Name: fmt.Sprintf("binary MB: %s vs a do-nothing function", name),
			Ours: num(size), Reference: num(refSize), Ratio: num(ratio(size, refSize)), Goal: "≤ 15 MB", Met: size > 0 && size <= 15,
			Detail: "dist/" + name + "/main as make build writes it (" + strings.Join(buildFlags, " ") + ")"})
	}
	return nil
}

func containsFold(xs []string, x string) bool {
	for _, v := range xs {
		if strings.EqualFold(v, x) {
			return true
		}
	}
	return false
}

func fileMB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return math.NaN()
	}
	return float64(st.Size()) / (1 << 20)
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ruleRows: b.patches rule changes through HTTP (PATCH /v1/campaigns/{id}, one at a time), each
// timed from the request until Redis holds the new version (read every 200 µs, so an upper bound);
// beside a bare MySQL commit (UPDATE in a transaction) followed by a Redis SET, on the same servers.
func (b *bench) ruleRows(ctx context.Context) error {
	id, err := b.createCampaign(ctx, 1000, 1)
	if err != nil {
		return err
	}
	cache := rediscache.New(b.rdb)
	var ours []time.Duration
	deadline := time.Now().Add(3 * time.Minute)
	for i := range b.patches {
		if time.Now().After(deadline) {
			b.progress("  stopped after %d patches (3 minute bound)", i)
			break
		}
		version := int64(i + 1)
		seen := make(chan time.Time, 1)
		pctx, stop := context.WithCancel(ctx)
		go func() {
			for pctx.Err() == nil {
				if c, err := cache.Campaign(pctx, id); err == nil && c.Version > version {
					seen <- time.Now()
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
		t0 := time.Now()
		r, err := b.client.Do("PATCH", "/v1/campaigns/"+id, b.operator, map[string]any{"stock": 1000 + i}, "If-Match", strconv.FormatInt(version, 10))
		if err != nil || r.Status != http.StatusOK {
			stop()
			return fmt.Errorf("patch %d: %v %d %s", i, err, r.Status, r.Raw)
		}
		select {
		case at := <-seen:
			ours = append(ours, at.Sub(t0))
		case <-time.After(10 * time.Second):
			stop()
			return fmt.Errorf("patch %d never reached Redis", i)
		}
		stop()
	}
	ref, err := b.bareCommits(ctx, len(ours))
	if err != nil {
		return err
	}
	slices.Sort(ours)
	slices.Sort(ref)
	pct := func(ds []time.Duration, p float64) float64 { return msOf(ds[min(len(ds)-1, int(p*float64(len(ds))))]) }
	o50, o99, r50, r99 := pct(ours, 0.5), pct(ours, 0.99), pct(ref, 0.5), pct(ref, 0.99)
	b.progress("  %d patches through HTTP: p50 %.2f ms p99 %.2f ms; bare commit + SET: p50 %.2f ms p99 %.2f ms", len(ours), o50, o99, r50, r99)
	b.rows = append(b.rows, Row{
		Name: fmt.Sprintf("rule commit → applied in Redis p99 ms, %d patches through HTTP vs a bare MySQL commit + Redis SET", len(ours)),
		Ours: num(o99), Reference: num(r99), Ratio: num(ratio(o99, r99)), Goal: "p99 ≤ 20 ms", Met: o99 <= 20,
		Detail: fmt.Sprintf("p50 %.2f ms vs %.2f ms (ratio %.1f); Redis read every 200 µs, so ours is an upper bound", o50, r50, ratio(o50, r50)),
	})
	return nil
}

// bareCommits times n of: BEGIN; UPDATE one row; COMMIT; SET one key — in a database of its own on
// the stack's MariaDB, straight to the servers.
func (b *bench) bareCommits(ctx context.Context, n int) ([]time.Duration, error) {
	cfg, err := mysql.ParseDSN(b.s.MySQLDSN)
	if err != nil {
		return nil, err
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS bench_ref"); err != nil {
		return nil, err
	}
	cfg.DBName = "bench_ref"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS rule (id INT PRIMARY KEY, stock BIGINT NOT NULL, version BIGINT NOT NULL) ENGINE=InnoDB",
		"REPLACE INTO rule VALUES (1, 1000, 1)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	var ds []time.Duration
	for i := range n {
		t0 := time.Now()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE rule SET stock = ?, version = version + 1 WHERE id = 1", 1000+i); err != nil {
			tx.Rollback()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		if err := b.rdb.Set(ctx, "bench:ref:rule", 1000+i, 0).Err(); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}

// brokerRows: produce → receive → ack through the broker emulator with its log on disk (fsynced, as
// the stack's BrokerDataDir runs it) beside the same with the log in memory, at 1 and 16 producers,
// the clients in a load process of their own.
func (b *bench) brokerRows(ctx context.Context) error {
	dataRoot, err := os.MkdirTemp(b.out, "broker-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataRoot)
	run := func(durable bool, producers int) (Report, error) {
		cfg := rocketmq.Config{MinLongPolling: 100 * time.Millisecond}
		if durable {
			cfg.DataDir = filepath.Join(dataRoot, fmt.Sprint("p", producers))
		}
		broker, err := rocketmq.New(cfg)
		if err != nil {
			return Report{}, err
		}
		defer broker.Close()
		srv, err := rocketmq.Listen(broker, "127.0.0.1:0")
		if err != nil {
			return Report{}, err
		}
		defer srv.Close()
		return b.load(ctx, "-mode", "broker", "-endpoint", srv.Addr(), "-c", strconv.Itoa(producers), "-d", "5s", "-n", "200000")
	}
	for _, p := range []int{1, 16} {
		durable, err := run(true, p)
		if err != nil {
			return err
		}
		mem, err := run(false, p)
		if err != nil {
			return err
		}
		o, r := durable.perSec("acked"), mem.perSec("acked")
		sendRate := func(r Report) float64 { return ratio(float64(r.Outcomes["sent"]), r.SendSeconds) }
		sd, sm := sendRate(durable), sendRate(mem)
		b.progress("  %d producers: durable %.0f msg/s acked, %.0f sent/s (%s); in memory %.0f msg/s acked, %.0f sent/s (%s)", p, o, sd, durable, r, sm, mem)
		q := ratio(o, r)
		goal, met := "ratio ≥ 0.5", q >= 0.5
		if p == 16 {
			goal, met = "≥ 10,000 msg/s and ratio ≥ 0.5", o >= 10_000 && q >= 0.5
		}
		detail := fmt.Sprintf("durable: %d sent, %d acked, send p50 %.2f ms p99 %.2f ms | memory: %d sent, %d acked, send p50 %.2f ms p99 %.2f ms; 4 consumers acknowledging one message per call, 256-byte bodies, 5 s of sends",
			durable.Outcomes["sent"], durable.Outcomes["acked"], durable.P50MS, durable.P99MS, mem.Outcomes["sent"], mem.Outcomes["acked"], mem.P50MS, mem.P99MS)
		b.rows = append(b.rows, Row{
			Name: fmt.Sprintf("broker produce → receive → ack msg/s, %d producer(s): durable log vs log in memory", p),
			Ours: num(o), Reference: num(r), Ratio: num(q), Goal: goal, Met: met && durable.Errors == 0, Detail: detail,
		}, Row{
			Name: fmt.Sprintf("broker sends/s alone (the log's part), %d producer(s): durable log vs log in memory", p),
			Ours: num(sd), Reference: num(sm), Ratio: num(ratio(sd, sm)), Goal: "ratio ≥ 0.5", Met: ratio(sd, sm) >= 0.5,
			Detail: "sends acknowledged by the broker per second while the producers ran; the row above also waits for the consumers",
		})
	}
	return nil
}

func fmtNum(v *float64) string {
	if v == nil {
		return "-"
	}
	switch a := math.Abs(*v); {
	case a >= 1000:
		return strconv.FormatFloat(math.Round(*v), 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(*v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(*v, 'f', 2, 64)
	}
}

func (b *bench) print() {
	fmt.Println()
	fmt.Printf("benchmarks, %s, %d CPUs, GOMAXPROCS %d, %s in all (ratios are side by side in this run; absolute figures are context)\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), runtime.GOMAXPROCS(0), time.Since(b.t0).Round(time.Second))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "row\tours\treference\tratio\tgoal\tmet\t")
	for _, r := range b.rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t\n", r.Name, fmtNum(r.Ours), fmtNum(r.Reference), fmtNum(r.Ratio), r.Goal, r.Met)
	}
	w.Flush()
	fmt.Println()
	fmt.Println("details:")
	for _, r := range b.rows {
		if r.Detail != "" {
			fmt.Printf("  %s: %s\n", r.Name, r.Detail)
		}
	}
}

func (b *bench) write() error {
	data, err := json.MarshalIndent(b.rows, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(b.out, "latest.json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", path)
	return nil
}

// cpu is CPU seconds by process group, read from /proc: the stack process (this one), each
// function's instances (by their binary, dist/<name>/main), and redis-server (INFO cpu).
type cpu map[string]float64

const clockTicks = 100 // USER_HZ on Linux

func (b *bench) cpuSnapshot(ctx context.Context) cpu {
	c := cpu{}
	c["stack"] = procCPU(os.Getpid())
	dist := filepath.Join(b.fnRoot, "dist") + string(filepath.Separator)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if rest, ok := strings.CutPrefix(string(argv0), dist); ok {
			c[strings.TrimSuffix(rest, "/main")] += procCPU(pid)
		}
	}
	if info, err := b.rdb.Info(ctx, "cpu").Result(); err == nil {
		for _, l := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				c["redis"] += f
			}
		}
	}
	return c
}

// procCPU is utime+stime of a process in seconds (0 when it is gone).
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// since is the CPU used between two snapshots as a share of one core over secs, largest first.
func (c cpu) since(before cpu, secs float64) string {
	type kv struct {
		k string
		v float64
	}
	var xs []kv
	for k, v := range c {
		if d := v - before[k]; d > 0.005 {
			xs = append(xs, kv{k, d})
		}
	}
	slices.SortFunc(xs, func(a, b kv) int {
		switch {
		case a.v > b.v:
			return -1
		case a.v < b.v:
			return 1
		}
		return 0
	})
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", x.k, 100*x.v/secs))
	}
	if len(parts) == 0 {
		return "(none seen)"
	}
	return strings.Join(parts, ", ") + " of one core"
}

// instanceSampler integrates, every 100 ms, how many instances of a function are alive (its
// processes, from /proc) and how many invocations it has in flight (the emulator's count).
type instanceSampler struct {
	aliveSeconds, busySeconds float64
	samples                   int
	done                      chan struct{}
	finished                  chan struct{}
}

func (is *instanceSampler) start(b *bench, function string) {
	is.done, is.finished = make(chan struct{}), make(chan struct{})
	binary := filepath.Join(b.fnRoot, "dist", function, "main")
	emu := b.s.Emulator
	go func() {
		defer close(is.finished)
		const every = 100 * time.Millisecond
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-is.done:
				return
			case <-t.C:
			}
			is.aliveSeconds += float64(countProcesses(binary)) * every.Seconds()
			is.busySeconds += float64(emu.InFlight(function)) * every.Seconds()
			is.samples++
		}
	}()
}

func (is *instanceSampler) stop() {
	close(is.done)
	<-is.finished
}

// countProcesses counts the processes whose argv[0] is binary.
func countProcesses(binary string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); string(argv0) == binary {
			n++
		}
	}
	return n
}

// runJSONTool runs a bench tool of its own process, echoes its output indented under the current
// step, and decodes the figures it wrote with -json to jsonPath into v.
func runJSONTool(cmd *exec.Cmd, name, jsonPath string, v any) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		fmt.Println("      " + l)
	}
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
