package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
)

// clusterBuckets is how many buckets the hot campaign's stock is split into in the bucketed run.
const clusterBuckets = 8

// clusterRows runs local/bench/cluster: the claim path (Cache.Claim) on the stack's standalone Redis
// and on a private Redis Cluster (3 masters, 3 replicas, started by the tool), one hot campaign with
// one bucket and with clusterBuckets, and counts the calls naming the campaign's keys per master.
func (b *bench) clusterRows(ctx context.Context) error {
	bin := filepath.Join(b.tools, "clusterbench")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./local/bench/cluster")
	build.Dir = b.root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build local/bench/cluster: %v\n%s", err, out)
	}
	jsonPath := filepath.Join(b.tools, "cluster.json")
	cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "-n", "20000", "-c", strconv.Itoa(b.c), "-buckets", strconv.Itoa(clusterBuckets), "-json", jsonPath)
	cmd.Dir = b.root
	// The standalone side runs on the stack's Redis (database 15, as the library rows); the cluster is
	// the tool's own.
	cmd.Env = append(os.Environ(), services.EnvRedisAddr+"="+b.s.RedisAddr, services.EnvRedisCluster+"=")
	var f struct {
		C                  int              `json:"c"`
		Buckets            int              `json:"buckets"`
		StandalonePerSec   float64          `json:"standalone_per_sec"`
		ClusterPerSec      float64          `json:"cluster_per_sec"`
		ClusterBucketsRate float64          `json:"cluster_buckets_per_sec"`
		CallsOneBucket     map[string]int64 `json:"calls_per_master_one_bucket"`
		CallsBuckets       map[string]int64 `json:"calls_per_master_buckets"`
		Errors             int              `json:"errors"`
	}
	if err := runJSONTool(cmd, "local/bench/cluster", jsonPath, &f); err != nil {
		return err
	}
	busiest := func(m map[string]int64) (float64, string) {
		var total, top int64
		var parts []string
		for addr, n := range m {
			total += n
			top = max(top, n)
			parts = append(parts, fmt.Sprintf("%s %d", addr, n))
		}
		return 100 * float64(top) / float64(max(total, 1)), strings.Join(parts, ", ")
	}
	oneShare, oneDetail := busiest(f.CallsOneBucket)
	nShare, nDetail := busiest(f.CallsBuckets)
	oneMachine := "all six redis-servers and the client share this machine's 2 cores, so a cluster cannot show its scale-out here"
	b.rows = append(b.rows,
		Row{
			Name: fmt.Sprintf("claims/s, Cache.Claim c=%d: Redis Cluster reached directly (3 masters, 3 replicas) vs standalone Redis", f.C),
			Ours: num(f.ClusterPerSec), Reference: num(f.StandalonePerSec), Ratio: num(ratio(f.ClusterPerSec, f.StandalonePerSec)),
			Goal: "reported", Met: f.Errors == 0,
			Detail: fmt.Sprintf("one campaign of one bucket, random users, unique request ids, rate limit on; %s; %d errors", oneMachine, f.Errors),
		},
		Row{
			Name: fmt.Sprintf("one hot campaign on the cluster, claims/s: %d buckets vs 1 bucket", f.Buckets),
			Ours: num(f.ClusterBucketsRate), Reference: num(f.ClusterPerSec), Ratio: num(ratio(f.ClusterBucketsRate, f.ClusterPerSec)),
			Goal: "reported", Met: f.Errors == 0,
			Detail: oneMachine,
		},
		Row{
			Name: fmt.Sprintf("one hot campaign on the cluster, the busiest master's share %% of the calls naming its keys: %d buckets vs 1 bucket", f.Buckets),
			Ours: num(nShare), Reference: num(oneShare), Ratio: num(ratio(nShare, oneShare)),
			Goal: "≤ 50 % (1/3 is even over 3 masters)", Met: f.Errors == 0 && nShare <= 50,
			Detail: fmt.Sprintf("%d buckets: %s; 1 bucket: %s", f.Buckets, nDetail, oneDetail),
		},
	)
	return nil
}
