// Command claim measures how many claims per second our claim path (rediscache.Cache.Claim, exactly as
// the claim function calls it) gets through one Redis, next to redis-benchmark running the same Lua
// scripts with EVALSHA against the same server in the same run:
//
//	go run ./local/cmd/services -- go run ./local/bench/claim [-n 50000] [-c 16,50] [-addr host:port]
//
// Redis is taken from -addr, else from BENEFITS_TEST_REDIS_ADDR (set by local/cmd/services), else a
// private redis-server is started for the run. Logical database -db (15) is flushed before every
// measured run, so each starts from the same state: a claim campaign with stock 1e9 and per-user
// limit 1e6 ("grant" rows: every call issues a unit, writes the claim record and XADDs it to the grant
// stream) and one with stock 0 ("sold_out" rows: the refusal path).
//
// What a zero-cost claim sends (shared/rediscache/claim.go), per claim:
//
//	grant:    round trip 1  EVALSHA claim_begin.lua (user slot; it checks its slot's readiness marker)
//	          round trip 2  EVALSHA claim.lua (campaign slot; the same)                        k = 2
//	sold_out: round trip 1  pipeline EVALSHA claim_refuse.lua (campaign slot, read-only: sold out, no
//	                        record of this claim id) + EXISTS of the user slot's readiness marker +
//	                        HEXISTS of the request's binding (user slot)                      k = 1
//
// Our side runs C goroutines, each doing whole claims back to back, over a go-redis client configured
// like shared/wiring (timeouts, MaxRetries 1) except that the pool has C connections (production has
// 16) so that both sides use C connections. Users are random over 2e9 ids, request ids unique, the
// per-user rate limit is on (-rate, 20 as in config), Now is time.Now(): the path a real request takes.
// redis-benchmark runs with the same -n and -c, -r 2e9 and __rand_int__ in ids of the same length.
//
// How to read the table (one row per path and concurrency C):
//
//	ours/s        whole claims per second through Cache.Claim; p50/p99 its latency per claim
//	rb main/s     redis-benchmark EVALSHA claim.lua per second: the script that decides
//	ours/rb       ours/s ÷ rb main/s
//	ours/(rb/k)   ours/s ÷ (rb main/s ÷ k): 1.0 would mean our k round trips cost no more than k
//	              round trips of the main script
//	rb chain/s    1 / Σ 1/rate of each script of the sequence, each measured by redis-benchmark alone:
//	              what a client doing exactly our scripts in order, with zero overhead, could reach.
//	              ours/chain is the fairest ratio; the gap is client overhead (Go, go-redis, the
//	              pipelined EXISTS) and the CPU the benchmark process itself takes from Redis.
//
// The ratios are what count; absolute numbers depend on the machine, and on a small one the client
// (our Go process or redis-benchmark) competes with redis-server for the same cores. For the sold-out
// chain, the user slot's part is measured as HEXISTS alone (ours pipelines an EXISTS with it), which
// makes rb chain/s slightly optimistic. redis-benchmark cannot name the readiness marker of a random
// user's slot; on the standalone server it runs against, any marker key costs the same.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
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

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/bench/internal/claimload"
	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

const (
	grantCampaign   = claimload.GrantCampaign
	soldOutCampaign = claimload.SoldOutCampaign
	userRange       = 2_000_000_000 // redis-benchmark's -r is an int; random() gives at most 2^31−1
)

func main() {
	n := flag.Int("n", 50_000, "claims (and redis-benchmark requests) per measured run")
	cs := flag.String("c", "16,50", "concurrency levels, comma separated: goroutines for ours, -c for redis-benchmark")
	addr := flag.String("addr", "", "Redis host:port (default: $"+services.EnvRedisAddr+", else a private redis-server)")
	db := flag.Int("db", 15, "logical database to use; flushed before every run")
	rate := flag.Int("rate", 20, "per-user rate limit passed to Claim (config default 20; 0 disables)")
	pool := flag.Int("pool", 0, "go-redis pool size for ours (0: same as the concurrency)")
	jsonOut := flag.String("json", "", "also write the rows to this file as JSON (for local/bench/table)")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile of the whole run (ours and redis-benchmark's runs alike) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatalf("cpu profile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("cpu profile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	var levels []int
	for _, s := range strings.Split(*cs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			fatalf("bad -c %q", *cs)
		}
		levels = append(levels, c)
	}
	if *n < 1 {
		fatalf("bad -n %d", *n)
	}
	ctx := context.Background()
	if *addr == "" {
		*addr = os.Getenv(services.EnvRedisAddr)
	}
	if *addr == "" {
		fmt.Println("no -addr and no", services.EnvRedisAddr, "; starting a private redis-server")
		r, err := services.StartRedis(ctx, services.Options{})
		if err != nil {
			fatalf("start redis: %v", err)
		}
		defer r.Stop()
		*addr = r.Addr()
	}
	b := &bench{addr: *addr, db: *db, n: *n, rate: *rate, pool: *pool}
	if err := b.run(ctx, levels); err != nil {
		fmt.Fprintln(os.Stderr, "claim bench:", err)
		os.Exit(1)
	}
	if *jsonOut != "" {
		if err := b.writeJSON(*jsonOut); err != nil {
			fmt.Fprintln(os.Stderr, "claim bench:", err)
			os.Exit(1)
		}
	}
}

// JSONRow is one row of -json: ours beside redis-benchmark for one path and concurrency.
type JSONRow struct {
	Path       string         `json:"path"` // grant or sold_out
	C          int            `json:"c"`
	K          int            `json:"k"`
	OursPerSec float64        `json:"ours_per_sec"`
	P50MS      float64        `json:"p50_ms"`
	P99MS      float64        `json:"p99_ms"`
	Outcomes   map[string]int `json:"outcomes"`
	Errors     int            `json:"errors"`
	RBMain     float64        `json:"rb_main_per_sec"`  // redis-benchmark EVALSHA claim.lua; 0 without it
	RBChain    float64        `json:"rb_chain_per_sec"` // 1/Σ(1/rate) of the scripts ours runs
}

func (b *bench) writeJSON(path string) error {
	rows := make([]JSONRow, 0, len(b.rows))
	for _, r := range b.rows {
		rows = append(rows, JSONRow{Path: r.path, C: r.c, K: r.k, OursPerSec: r.ours.perSec,
			P50MS: float64(r.ours.p50.Microseconds()) / 1000, P99MS: float64(r.ours.p99.Microseconds()) / 1000,
			Outcomes: r.ours.codes, Errors: r.ours.errs, RBMain: r.rbMain, RBChain: r.rbChain})
	}
	data, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "claim bench: "+format+"\n", a...)
	os.Exit(2)
}

type bench struct {
	addr        string
	db, n, rate int
	pool        int
	admin       *redis.Client
	adminCache  *rediscache.Cache
	rbPath      string
	shaBegin    string
	shaClaim    string
	shaUnbind   string
	shaRefuse   string
	rows        []row
}

type row struct {
	path      string
	c, k      int
	ours      oursResult
	rbMain    float64
	rbChain   float64
	rbMissing bool
}

type oursResult struct {
	perSec   float64
	p50, p99 time.Duration
	codes    map[string]int
	errs     int
	firstErr error
}

func (b *bench) run(ctx context.Context, levels []int) error {
	b.admin = redis.NewClient(&redis.Options{Addr: b.addr, DB: b.db})
	defer b.admin.Close()
	if err := b.admin.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", b.addr, err)
	}
	b.adminCache = rediscache.New(b.admin)
	fmt.Printf("redis %s db %d, n=%d, c=%v, rate limit %d/user/s, GOMAXPROCS %d, %d CPUs\n",
		b.addr, b.db, b.n, levels, b.rate, runtime.GOMAXPROCS(0), runtime.NumCPU())

	b.rbPath = findBenchmark()

	// Warm up ours once: this also loads the embedded scripts into Redis (EVALSHA, then EVAL on NOSCRIPT),
	// which lets us check below that the Lua files on disk are the very scripts the claim path runs.
	fmt.Println("warming up (ours, 2000 claims)")
	if err := b.reset(ctx); err != nil {
		return err
	}
	if _, err := b.ours(ctx, grantCampaign, slices.Max(levels), 2000); err != nil {
		return err
	}
	if err := b.loadScripts(ctx); err != nil {
		return err
	}
	if b.rbPath != "" {
		if err := b.sanity(ctx); err != nil {
			return err
		}
	}

	for _, c := range levels {
		if err := b.level(ctx, c); err != nil {
			return err
		}
	}
	b.printTable()
	return b.reset(ctx)
}

// findBenchmark returns redis-benchmark's path, installing Debian's redis-tools when root may.
func findBenchmark() string {
	if p, err := exec.LookPath("redis-benchmark"); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			fmt.Println("redis-benchmark not found; running: apt-get install -y redis-tools")
			cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "redis-tools")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if cmd.Run() == nil {
				if p, err := exec.LookPath("redis-benchmark"); err == nil {
					return p
				}
			}
		}
	}
	fmt.Println("redis-benchmark not found: measuring ours only, no ratio")
	return ""
}

// reset empties the database and writes the ready marks and the two campaigns, as a rebuild would.
func (b *bench) reset(ctx context.Context) error {
	if err := b.admin.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flushdb: %w", err)
	}
	return claimload.Reset(ctx, b.adminCache)
}

// luaDir finds shared/rediscache/lua: from the working directory upwards, else next to this source.
func luaDir() (string, error) {
	rel := filepath.Join("shared", "rediscache", "lua")
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if st, err := os.Stat(filepath.Join(dir, rel)); err == nil && st.IsDir() {
				return filepath.Join(dir, rel), nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find shared/rediscache/lua (run from inside the repository)")
}

// loadScripts checks that the scripts on disk are cached already (our warm-up put them there, so they
// are byte for byte what the claim path runs) and loads them for redis-benchmark.
func (b *bench) loadScripts(ctx context.Context) error {
	dir, err := luaDir()
	if err != nil {
		return err
	}
	for _, s := range []struct {
		name string
		sha  *string
	}{{"claim_begin", &b.shaBegin}, {"claim", &b.shaClaim}, {"unbind", &b.shaUnbind}, {"claim_refuse", &b.shaRefuse}} {
		src, err := os.ReadFile(filepath.Join(dir, s.name+".lua"))
		if err != nil {
			return err
		}
		sum := sha1.Sum(src)
		*s.sha = hex.EncodeToString(sum[:])
		exists, err := b.admin.ScriptExists(ctx, *s.sha).Result()
		if err != nil {
			return err
		}
		if s.name != "unbind" && s.name != "claim_refuse" && !exists[0] { // only refusals run these; the warm-up has none
			fmt.Printf("WARNING: %s.lua on disk (sha %s) is not the script the claim path ran\n", s.name, *s.sha)
		}
		got, err := b.admin.ScriptLoad(ctx, string(src)).Result()
		if err != nil {
			return fmt.Errorf("script load %s: %w", s.name, err)
		}
		*s.sha = got
		fmt.Printf("script %-12s sha %s\n", s.name+".lua", got)
	}
	return nil
}

// rbArgs are redis-benchmark's command arguments for one script. Ids have the length ours have:
// users u+12 digits, claim ids clm_+24 characters, request ids r+12 digits.
func (b *bench) rbArgs(script, campaignID string, nowMS int64) []string {
	switch script {
	case "claim":
		p := "bn:{c:" + campaignID + "}:"
		return []string{"evalsha", b.shaClaim, "6", p + "camp", p + "held", p + "claims", p + "grants", p + "pending", rediscache.ReadyMarkerOf(p + "camp"),
			"u__rand_int__", "clm_000000000000__rand_int__", "r__rand_int__", strconv.FormatInt(nowMS, 10), "claim", "0", "0", "0"}
	case "claim_begin":
		p := "bn:{u:__rand_int__}:"
		return []string{"evalsha", b.shaBegin, "4", p + "user", p + "req", p + "rate", rediscache.ReadyMarkerOf("bn:{u:0}:user"),
			"r__rand_int__", campaignID, strconv.Itoa(b.rate), strconv.FormatInt(nowMS, 10)}
	case "unbind":
		return []string{"evalsha", b.shaUnbind, "1", "bn:{u:__rand_int__}:req", "r__rand_int__", campaignID}
	case "claim_refuse":
		p := "bn:{c:" + campaignID + "}:"
		return []string{"evalsha", b.shaRefuse, "4", p + "camp", p + "held", p + "claims", rediscache.ReadyMarkerOf(p + "camp"),
			"clm_000000000000__rand_int__", "u__rand_int__", strconv.FormatInt(nowMS, 10), "claim"}
	case "hexists":
		// The second round trip of an early refusal, less its EXISTS of the user slot's marker.
		return []string{"hexists", "bn:{u:__rand_int__}:req", "r__rand_int__"}
	}
	panic(script)
}

// sanity runs each redis-benchmark command once by hand (random ids filled in) and checks the reply,
// so a wrong key count or argument order cannot pass as a fast benchmark of an error.
func (b *bench) sanity(ctx context.Context) error {
	nowMS := time.Now().UnixMilli()
	check := func(script, campaignID, want string) error {
		args := b.rbArgs(script, campaignID, nowMS)
		cmd := make([]any, len(args))
		for i, a := range args {
			cmd[i] = strings.ReplaceAll(a, "__rand_int__", fmt.Sprintf("%012d", rand.IntN(userRange)))
		}
		v, err := b.admin.Do(ctx, cmd...).Result()
		if err != nil {
			return fmt.Errorf("sanity %s on %s: %w", script, campaignID, err)
		}
		got := fmt.Sprint(v)
		if arr, ok := v.([]any); ok && len(arr) > 0 {
			got = fmt.Sprint(arr[0])
		}
		if got != want {
			return fmt.Errorf("sanity %s on %s: reply %v, want %s first", script, campaignID, v, want)
		}
		return nil
	}
	if err := check("claim_begin", grantCampaign, "ok"); err != nil {
		return err
	}
	if err := check("claim", grantCampaign, "ok"); err != nil {
		return err
	}
	if err := check("claim", soldOutCampaign, "sold_out"); err != nil {
		return err
	}
	if err := check("unbind", soldOutCampaign, "0"); err != nil {
		return err
	}
	if err := check("claim_refuse", soldOutCampaign, "sold_out"); err != nil {
		return err
	}
	if err := check("hexists", soldOutCampaign, "0"); err != nil {
		return err
	}
	fmt.Println("sanity: redis-benchmark commands reply ok / ok / sold_out / 0 / sold_out / 0 as expected")
	return nil
}

func (b *bench) level(ctx context.Context, c int) error {
	fmt.Printf("warming up c=%d\n", c)
	if err := b.reset(ctx); err != nil {
		return err
	}
	if _, err := b.ours(ctx, grantCampaign, c, min(b.n/10, 5000)); err != nil {
		return err
	}

	// grant path
	if err := b.reset(ctx); err != nil {
		return err
	}
	og, err := b.ours(ctx, grantCampaign, c, b.n)
	if err != nil {
		return err
	}
	xlen := b.admin.XLen(ctx, "bn:{c:"+grantCampaign+"}:grants").Val()
	fmt.Printf("ours c=%d grant: %.0f claims/s, p50 %s p99 %s; outcomes %v, errors %d, stream XLEN %d\n",
		c, og.perSec, og.p50.Round(time.Microsecond), og.p99.Round(time.Microsecond), og.codes, og.errs, xlen)
	if int64(og.codes["granted"]) != xlen {
		fmt.Printf("  WARNING: %d granted but %d stream entries\n", og.codes["granted"], xlen)
	}
	if og.errs > 0 {
		fmt.Printf("  first error: %v\n", og.firstErr)
	}
	gr := row{path: "grant", c: c, k: 2, ours: og, rbMissing: b.rbPath == ""}
	if b.rbPath != "" {
		claimPS, err := b.rb(ctx, "claim", grantCampaign, c, true)
		if err != nil {
			return err
		}
		beginPS, err := b.rb(ctx, "claim_begin", grantCampaign, c, false)
		if err != nil {
			return err
		}
		gr.rbMain = claimPS
		gr.rbChain = 1 / (1/claimPS + 1/beginPS)
	}
	b.rows = append(b.rows, gr)

	// sold-out path
	if err := b.reset(ctx); err != nil {
		return err
	}
	so, err := b.ours(ctx, soldOutCampaign, c, b.n)
	if err != nil {
		return err
	}
	fmt.Printf("ours c=%d sold_out: %.0f claims/s, p50 %s p99 %s; outcomes %v, errors %d\n",
		c, so.perSec, so.p50.Round(time.Microsecond), so.p99.Round(time.Microsecond), so.codes, so.errs)
	if so.errs > 0 {
		fmt.Printf("  first error: %v\n", so.firstErr)
	}
	sr := row{path: "sold_out", c: c, k: 1, ours: so, rbMissing: b.rbPath == ""}
	if b.rbPath != "" {
		claimPS, err := b.rb(ctx, "claim", soldOutCampaign, c, false)
		if err != nil {
			return err
		}
		refusePS, err := b.rb(ctx, "claim_refuse", soldOutCampaign, c, false)
		if err != nil {
			return err
		}
		bindingPS, err := b.rb(ctx, "hexists", soldOutCampaign, c, false)
		if err != nil {
			return err
		}
		sr.rbMain = claimPS
		sr.rbChain = 1 / (1/refusePS + 1/bindingPS)
	}
	b.rows = append(b.rows, sr)
	return nil
}

// ours runs n claims on c goroutines through a fresh client with c pooled connections.
func (b *bench) ours(ctx context.Context, campaignID string, c, n int) (oursResult, error) {
	poolSize := b.pool
	if poolSize == 0 {
		poolSize = c
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: b.addr, DB: b.db, DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		PoolSize: poolSize, MaxRetries: 1,
	})
	defer rdb.Close()
	cache := rediscache.New(rdb)
	r := claimload.Run(ctx, c, n, 0, func(ctx context.Context, i int) (string, error) {
		return claimload.Claim(ctx, cache, rediscache.ClaimInput{
			UserID: fmt.Sprintf("u%012d", rand.IntN(userRange)), CampaignID: campaignID,
			RequestID: fmt.Sprintf("r%012d", i), Now: time.Now(), By: domain.ByClaim, RateLimit: b.rate,
		})
	})
	return oursResult{perSec: r.PerSec(""), p50: r.Percentile(0.50), p99: r.Percentile(0.99),
		codes: r.Codes, errs: r.Errs, firstErr: r.FirstErr}, nil
}

// rb runs redis-benchmark on one script from a freshly reset database and returns its requests/s.
func (b *bench) rb(ctx context.Context, script, campaignID string, c int, countGrants bool) (float64, error) {
	if err := b.reset(ctx); err != nil {
		return 0, err
	}
	host, port, err := net.SplitHostPort(b.addr)
	if err != nil {
		return 0, err
	}
	args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(b.db), "-n", strconv.Itoa(b.n), "-c", strconv.Itoa(c),
		"-r", strconv.Itoa(userRange), "--csv"}
	args = append(args, b.rbArgs(script, campaignID, time.Now().UnixMilli())...)
	if len(b.rows) == 0 && script == "claim" && countGrants {
		fmt.Println("$ redis-benchmark " + strings.Join(args, " "))
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, b.rbPath, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("redis-benchmark %s: %v: %s", script, err, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "rror") {
		return 0, fmt.Errorf("redis-benchmark %s reported errors: %s%s", script, stdout.String(), stderr.String())
	}
	recs, err := csv.NewReader(&stdout).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark %s: csv: %w", script, err)
	}
	var rps float64
	var p50, p99 string
	for _, r := range recs {
		if len(r) >= 7 {
			if v, err := strconv.ParseFloat(r[1], 64); err == nil {
				rps, p50, p99 = v, r[4], r[6]
			}
		}
	}
	if rps == 0 {
		return 0, fmt.Errorf("redis-benchmark %s: no rate in %q", script, stdout.String())
	}
	extra := ""
	if countGrants {
		extra = fmt.Sprintf("; stream XLEN %d", b.admin.XLen(ctx, "bn:{c:"+campaignID+"}:grants").Val())
	}
	path := "grant"
	if campaignID == soldOutCampaign {
		path = "sold_out"
	}
	what := script + ".lua"
	if script == "hexists" {
		what = "HEXISTS"
	}
	fmt.Printf("redis-benchmark c=%d %s %s: %.0f calls/s, p50 %sms p99 %sms%s\n", c, path, what, rps, p50, p99, extra)
	return rps, nil
}

func (b *bench) printTable() {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tc\tk\tours/s\tp50 ms\tp99 ms\trb main/s\tours/rb\trb/k\tours/(rb/k)\trb chain/s\tours/chain\t")
	for _, r := range b.rows {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t", r.path, r.c, r.k, r.ours.perSec,
			float64(r.ours.p50.Microseconds())/1000, float64(r.ours.p99.Microseconds())/1000)
		if r.rbMissing {
			fmt.Fprintln(w, "-\t-\t-\t-\t-\t-\t")
			continue
		}
		perK := r.rbMain / float64(r.k)
		fmt.Fprintf(w, "%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t\n", r.rbMain, r.ours.perSec/r.rbMain, perK,
			r.ours.perSec/perK, r.rbChain, r.ours.perSec/r.rbChain)
	}
	w.Flush()
	fmt.Println("k: round trips per claim of ours; main: claim.lua; chain: 1/Σ(1/rate) over the scripts ours runs, each by redis-benchmark")
}
