// Command cluster measures the claim path (rediscache.Cache.Claim, as the claim function calls it, over
// the client shared/wiring builds) on a standalone Redis and on a Redis Cluster in the same run, and
// shows how one hot campaign's calls spread over the cluster's masters:
//
//	go run ./local/cmd/services --redis-cluster -- go run ./local/bench/cluster [-n 20000] [-c 16,50]
//
// Servers come from BENEFITS_TEST_REDIS_ADDR / BENEFITS_TEST_REDIS_CLUSTER (set by local/cmd/services),
// else private ones are started. The standalone server is used through logical database -db, flushed
// first; the cluster is flushed on every master. Each run: one campaign (stock 1e9, per-user limit
// 1e6), users random over 2e9 ids, unique request ids, rate limit on, zero points cost.
//
// Rows: standalone; cluster direct (go-redis cluster client, REDIS_CLUSTER_ADDRS); the same with the
// campaign's stock split into -buckets buckets (domain.Campaign.Buckets); cluster direct with
// REDIS_WAIT_REPLICAS=1 (every claim waits for its slot's replica). On one machine the cluster's six
// redis-servers share the cores with the client, so the cluster cannot show its scale-out here; the
// rows show what the cluster client and WAIT cost per claim. The per-master tables count the calls
// that name the hot campaign's keys, per master that owns them, during the cluster runs with one
// bucket and with -buckets: with one bucket every one lands on the master of the campaign's hash tag.
// -json writes the figures for local/bench/table.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/wiring"
)

const campaignID = "bench-hot"

func main() {
	n := flag.Int("n", 20_000, "claims per measured run")
	cs := flag.String("c", "16,50", "concurrency levels (goroutines), comma separated")
	db := flag.Int("db", 15, "logical database of the standalone server; flushed")
	buckets := flag.Int("buckets", 8, "buckets of the hot campaign's stock in the bucketed cluster run")
	jsonPath := flag.String("json", "", "also write the figures of the first concurrency level here")
	flag.Parse()
	var levels []int
	for _, s := range strings.Split(*cs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			fatalf("bad -c %q", *cs)
		}
		levels = append(levels, c)
	}
	ctx := context.Background()
	addr := os.Getenv(services.EnvRedisAddr)
	if addr == "" {
		r, err := services.StartRedis(ctx, services.Options{})
		if err != nil {
			fatalf("start redis: %v", err)
		}
		defer r.Stop()
		addr = r.Addr()
	}
	var seeds []string
	if v := os.Getenv(services.EnvRedisCluster); v != "" {
		seeds = strings.Split(v, ",")
	} else {
		cl, err := services.StartRedisCluster(ctx, services.Options{})
		if err != nil {
			fatalf("start redis cluster: %v", err)
		}
		defer cl.Stop()
		seeds = cl.Addrs()
	}
	if err := run(ctx, addr, *db, seeds, *n, levels, *buckets, *jsonPath); err != nil {
		fmt.Fprintln(os.Stderr, "cluster bench:", err)
		os.Exit(1)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "cluster bench: "+format+"\n", a...)
	os.Exit(2)
}

type setup struct {
	name    string
	rdb     redis.UniversalClient
	cache   *rediscache.Cache
	buckets int
	calls   *campaignCalls // counts the hot campaign's calls per key (cluster setups)
}

// Figures is what -json writes: the first concurrency level's rates, and the hot campaign's calls per
// master with one bucket and with Buckets.
type Figures struct {
	C                  int              `json:"c"`
	Buckets            int              `json:"buckets"`
	StandalonePerSec   float64          `json:"standalone_per_sec"`
	ClusterPerSec      float64          `json:"cluster_per_sec"`
	ClusterBucketsRate float64          `json:"cluster_buckets_per_sec"`
	CallsOneBucket     map[string]int64 `json:"calls_per_master_one_bucket"`
	CallsBuckets       map[string]int64 `json:"calls_per_master_buckets"`
	Errors             int              `json:"errors"`
}

func run(ctx context.Context, addr string, db int, seeds []string, n int, levels []int, buckets int, jsonPath string) error {
	// Both as shared/wiring builds them (pool of 16 per server); the standalone one on its own database.
	standalone := redis.NewClient(&redis.Options{Addr: addr, DB: db, PoolSize: 16,
		DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
	defer standalone.Close()
	cluster := wiring.RedisClient(config.Config{RedisCluster: seeds})
	defer cluster.Close()
	calls := &campaignCalls{perKey: map[string]int64{}}
	cluster.AddHook(calls)
	bucketedName := fmt.Sprintf("cluster direct, %d buckets", buckets)
	setups := []setup{
		{"standalone", standalone, rediscache.New(standalone), 1, nil},
		{"cluster direct", cluster, rediscache.New(cluster), 1, calls},
		{bucketedName, cluster, rediscache.New(cluster), buckets, calls},
		{"cluster direct, WAIT 1", cluster, rediscache.NewWith(cluster, rediscache.Options{ReplicaAcks: 1}), 1, nil},
	}
	fig := Figures{C: levels[0], Buckets: buckets}
	fmt.Printf("standalone %s db %d; cluster seeds %s; n=%d per run\n", addr, db, strings.Join(seeds, ","), n)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\tc\tclaims/s\tp50\tp99\tgranted\terrors\t")
	for _, c := range levels {
		for _, s := range setups {
			if err := reset(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			_, _ = claims(ctx, s.cache, c, min(n/10, 2000)) // warm up: scripts loaded, pools filled
			calls.reset()
			r, err := claims(ctx, s.cache, c, n)
			if err != nil {
				return err
			}
			if c == levels[0] {
				fig.Errors += r.errs
				switch s.name {
				case "standalone":
					fig.StandalonePerSec = r.perSec
				case "cluster direct":
					fig.ClusterPerSec = r.perSec
					if fig.CallsOneBucket, err = calls.perMaster(ctx, cluster); err != nil {
						return err
					}
				case bucketedName:
					fig.ClusterBucketsRate = r.perSec
					if fig.CallsBuckets, err = calls.perMaster(ctx, cluster); err != nil {
						return err
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%d\t%d\t\n", s.name, c, r.perSec, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.granted, r.errs)
		}
	}
	tw.Flush()
	for _, t := range []struct {
		name      string
		perMaster map[string]int64
	}{{"1 bucket", fig.CallsOneBucket}, {fmt.Sprintf("%d buckets", buckets), fig.CallsBuckets}} {
		fmt.Printf("\none hot campaign on the cluster, %s (c=%d, %d claims): calls naming its keys, per master\n", t.name, levels[0], n)
		masters := make([]string, 0, len(t.perMaster))
		var total int64
		for m, v := range t.perMaster {
			masters = append(masters, m)
			total += v
		}
		slices.Sort(masters)
		for _, m := range masters {
			fmt.Printf("  %-21s %7d  %5.1f%%\n", m, t.perMaster[m], 100*float64(t.perMaster[m])/float64(max(total, 1)))
		}
	}
	if jsonPath != "" {
		data, err := json.MarshalIndent(fig, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(jsonPath, data, 0o644)
	}
	return nil
}

// campaignCalls counts the commands that name the hot campaign's keys (its hash tag or a bucket's),
// per key; perMaster maps them onto the masters that own the keys.
type campaignCalls struct {
	mu     sync.Mutex
	perKey map[string]int64
}

func (h *campaignCalls) reset() {
	h.mu.Lock()
	h.perKey = map[string]int64{}
	h.mu.Unlock()
}

func (h *campaignCalls) count(cmd redis.Cmder) {
	args := cmd.Args()
	var key string
	switch strings.ToLower(fmt.Sprint(args[0])) {
	case "evalsha", "eval":
		if len(args) > 3 {
			key = fmt.Sprint(args[3])
		}
	default:
		if len(args) > 1 {
			key = fmt.Sprint(args[1])
		}
	}
	if !strings.Contains(key, "{c:"+campaignID) {
		return
	}
	h.mu.Lock()
	h.perKey[key]++
	h.mu.Unlock()
}

func (h *campaignCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *campaignCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *campaignCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}

func (h *campaignCalls) perMaster(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nil, fmt.Errorf("not a cluster client: %T", rdb)
	}
	out := map[string]int64{}
	var mu sync.Mutex // ForEachMaster runs the masters concurrently
	if err := cc.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		mu.Lock()
		out[m.Options().Addr] += 0 // a master the campaign never reached is listed with 0
		mu.Unlock()
		return nil
	}); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, n := range h.perKey {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		out[m.Options().Addr] += n
	}
	return out, nil
}

func reset(ctx context.Context, s setup) error {
	if err := services.FlushAll(ctx, s.rdb); err != nil {
		return err
	}
	if err := s.cache.MarkReady(ctx); err != nil {
		return err
	}
	now := time.Now().UTC()
	camp := domain.Campaign{ID: campaignID, Name: "bench", Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim,
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour), Stock: domain.MaxStock,
		PerUserLimit: domain.MaxPerUserLimit, Status: domain.StatusActive, Version: 1, Buckets: s.buckets}
	if res, err := s.cache.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
		return fmt.Errorf("apply campaign: %+v %v", res, err)
	}
	return nil
}

// evalCalls reads EVALSHA + EVAL calls from INFO commandstats, per master (one entry standalone).
func evalCalls(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	out := map[string]int64{}
	var mu sync.Mutex
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		var calls int64
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "cmdstat_evalsha:") || strings.HasPrefix(line, "cmdstat_eval:") {
				f := strings.SplitN(strings.SplitN(line, ":", 2)[1], ",", 2)[0]
				v, _ := strconv.ParseInt(strings.TrimPrefix(f, "calls="), 10, 64)
				calls += v
			}
		}
		mu.Lock()
		out[c.Options().Addr] = calls
		mu.Unlock()
		return nil
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return out, cc.ForEachMaster(ctx, read)
	}
	return out, read(ctx, rdb.(*redis.Client))
}

type result struct {
	perSec        float64
	p50, p99      time.Duration
	granted, errs int
}

func claims(ctx context.Context, cache *rediscache.Cache, c, n int) (result, error) {
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var next atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < c; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				out, err := cache.Claim(ctx, rediscache.ClaimInput{
					UserID: fmt.Sprintf("u%012d", rand.IntN(2_000_000_000)), CampaignID: campaignID,
					RequestID: fmt.Sprintf("r%012d", i), Now: time.Now(), By: domain.ByClaim, RateLimit: 20,
				})
				lat[i] = time.Since(t0)
				if err != nil {
					errs.Add(1)
					continue
				}
				ok[i] = out.Code == ""
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := result{perSec: float64(n) / elapsed.Seconds(), errs: int(errs.Load())}
	for _, g := range ok {
		if g {
			r.granted++
		}
	}
	slices.Sort(lat)
	r.p50, r.p99 = lat[n/2], lat[min(n-1, n*99/100)]
	return r, nil
}
