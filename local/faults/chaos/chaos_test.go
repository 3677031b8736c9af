package chaos

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/local/stack"
)

func TestScheduleRoundTrip(t *testing.T) {
	for seed := range uint64(50) {
		s := Generate(seed, 4*time.Second)
		back, err := ParseSchedule(s.String())
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if back.String() != s.String() {
			t.Fatalf("seed %d: %s read back as %s", seed, s, back)
		}
	}
	for _, bad := range []string{"x/cut:redis@1ms", "1/cut:redis", "1/cut:redis@abc", "1/latency:redis@1ms+2ms=z"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestGenerateIsSeeded(t *testing.T) {
	if Generate(7, 4*time.Second).String() != Generate(7, 4*time.Second).String() {
		t.Fatal("the same seed drew two schedules")
	}
	kinds := map[FaultKind]bool{}
	for seed := range uint64(300) {
		for _, f := range Generate(seed, 4*time.Second).Faults {
			kinds[f.Kind] = true
			if f.At < 0 || f.At >= 4*time.Second {
				t.Fatalf("fault %s outside the workload", f)
			}
		}
	}
	for _, k := range []FaultKind{Latency, Timeout, Reset, Cut, RedisEmpty, RedisKeep, MySQLRestart, BrokerRestart, Kill, Duplicate, Late} {
		if !kinds[k] {
			t.Errorf("300 seeds never drew %s", k)
		}
	}
}

// A cluster run's schedules draw the cluster's own faults (every schedule at least one) and none that
// needs the standalone Redis, and read back as they were written.
func TestGenerateCluster(t *testing.T) {
	if GenerateCluster(7, 4*time.Second).String() != GenerateCluster(7, 4*time.Second).String() {
		t.Fatal("the same seed drew two cluster schedules")
	}
	kinds := map[FaultKind]bool{}
	targets := map[string]bool{}
	for seed := range uint64(300) {
		s := GenerateCluster(seed, 4*time.Second)
		back, err := ParseSchedule(s.String())
		if err != nil || back.String() != s.String() {
			t.Fatalf("seed %d: %s read back as %s (%v)", seed, s, back, err)
		}
		clusterFaults := 0
		for _, f := range s.Faults {
			kinds[f.Kind] = true
			if StandaloneOnly(f) {
				t.Fatalf("seed %d drew %s, which needs the standalone Redis", seed, f)
			}
			if f.At < 0 || f.At >= 4*time.Second {
				t.Fatalf("fault %s outside the workload", f)
			}
			if ClusterOnly(f.Kind) {
				clusterFaults++
				targets[f.Target] = true
			}
		}
		if clusterFaults == 0 {
			t.Fatalf("seed %d drew no cluster fault: %s", seed, s)
		}
	}
	for _, k := range []FaultKind{RedisFailover, RedisMasterKill, RedisShardEmpty, Latency, Timeout, Reset, Cut, MySQLRestart, BrokerRestart, Kill, Duplicate, Late} {
		if !kinds[k] {
			t.Errorf("300 cluster seeds never drew %s", k)
		}
	}
	for _, s := range shards {
		if !targets[s] {
			t.Errorf("300 cluster seeds never hit the shard of campaign %s", s)
		}
	}
	for seed := range uint64(300) {
		for _, f := range Generate(seed, 4*time.Second).Faults {
			if ClusterOnly(f.Kind) {
				t.Fatalf("standalone seed %d drew %s", seed, f)
			}
		}
	}
}

// A schedule replayed on the wrong Redis is refused before any stack starts, rather than counted as
// faults that failed to apply.
func TestReplayNeedsItsRedisMode(t *testing.T) {
	for _, c := range []struct{ redis, schedule, want string }{
		{RedisStandalone, "5/redis-failover:open@100ms", "REDIS=cluster"},
		{RedisCluster, "5/redis-restart-empty:@100ms", "standalone"},
		{RedisCluster, "5/cut:redis@100ms+500ms", "standalone"},
		{"sentinel", "5/kill:claim@100ms", "standalone or cluster"},
	} {
		_, err := Run(context.Background(), Config{Replay: []string{c.schedule}, Redis: c.redis})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s on %s: %v; want an error naming %q", c.schedule, c.redis, err, c.want)
		}
	}
}

// regressions are schedules that once broke an invariant; each runs on every `make test`.
var regressions = []string{
	// The broker cut for 3.9 s while users claimed; Redis restarted empty 1.5 s into the cut. Four
	// claims were answered 201 while their grants were only in the Redis stream, and were never
	// recorded. Found by seed 87 of the first full run.
	"87/cut:rocketmq@482ms+3850ms,redis-restart-empty:@1962ms",
	// 885 ms of latency (plus jitter) on the Redis link: go-redis re-sent a claim script after its
	// read timeout and the re-sent call found its own claim, so a first request was answered 200.
	// Found by seed 75.
	"75/latency:redis@638ms+3657ms=885",
	// The ledger cannot reach MySQL while Redis is lost: MySQL's counts held still, the old rebuild
	// took that for a drained ledger and restored stock and holdings from a partial count (16 users
	// over their limit, stock oversold, a negative balance).
	"2/cut:mysql-ledger@300ms+4500ms,redis-restart-empty:@2500ms",
	// Redis restarted twice from its data while the ledger's link was cut. Found by seed 76 with
	// snapshot restarts, which brought back a released reservation; the suite now runs Redis
	// fsync-always, as production must (README).
	"76/redis-restart-data:@1757ms,redis-restart-data:@2562ms,cut:mysql-ledger@2810ms+4125ms",
	// 1.4 s of latency on the Redis link: a slow reconcile read the cache, then MySQL after the
	// ledger had written more, took the cache for behind and repaired issued to MySQL's count plus the
	// grants it had scanned as in flight, counting twice those written meanwhile. Found by seed 3 of
	// the first run after the fixes above.
	"3/kill:cachesync@965ms,latency:redis@1652ms+3526ms=1355",
	// Claim functions killed mid-claim left points claims reserved; one, reserved when the reconciler
	// read the cache, was granted and recorded before it read MySQL and counted twice: the repair
	// raised issued one above MySQL for good. Found by seed 237; it shows only when the reconciler runs
	// in that window (0 of 30 replays), so shared/timer's reconcile_reads_test.go pins it with hooks.
	"237/kill:claim@51ms,duplicate:change@632ms,broker-restart:@1624ms,kill:claim@1678ms",
}

// The seeded subset of `make faults` that runs in `make test`, so that a regression fails CI: a few
// generated schedules plus every schedule that once found a bug.
func TestFaultSuiteSubset(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite needs the compiled functions and a private stack; skipped with -short")
	}
	root, err := stack.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/dist/claim/main"); err != nil {
		t.Fatalf("compiled functions missing: run make build first (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Schedules: 6, Seed: 9000, Replay: regressions, Workers: 2, Root: root, Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if want := 6 + len(regressions); rep.Schedules != want {
		t.Fatalf("%d schedules ran, want %d", rep.Schedules, want)
	}
	if rep.Violations != 0 {
		t.Fatalf("%d violations; reproduce with make faults SCHEDULE='<schedule above>'", rep.Violations)
	}
}

// clusterRegressions are cluster schedules (REDIS=cluster) that once broke an invariant, and the two
// faults the cluster mode exists for, on the rush's own shard: a master handed over with CLUSTER
// FAILOVER mid-rush, and a master killed (kill -9) mid-rush.
var clusterRegressions = []string{
	"11/redis-failover:open@1000ms",
	"12/redis-master-kill:open@1000ms",
	// Claims decided by an instance killed while the broker was cut, lost with their emptied shard
	// before they were durable, after other claims had been refused on their account: the check's
	// model had no cache loss and found no linearization in about half the replays.
	"86/cut:rocketmq@771ms+2681ms,redis-shard-empty:grant@2170ms,kill:claim@2384ms,kill:timer@2996ms",
}

// The cluster subset of the fault suite, in the Redis Cluster pass of `make test`
// (BENEFITS_TEST_REDIS_MODE=cluster): two generated cluster schedules (seeds 9000 and 9001: a
// failover of the paid campaign's master while MySQL is cut, a master kill with a MySQL restart) and
// clusterRegressions, each on a stack whose functions reach a private cluster with
// REDIS_WAIT_REPLICAS=1.
func TestFaultSuiteClusterSubset(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite needs the compiled functions and a private stack; skipped with -short")
	}
	if os.Getenv(services.EnvRedisMode) != "cluster" {
		t.Skip("runs in the Redis Cluster pass of make test (BENEFITS_TEST_REDIS_MODE=cluster)")
	}
	root, err := stack.FindRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/dist/claim/main"); err != nil {
		t.Fatalf("compiled functions missing: run make build first (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Schedules: 2, Seed: 9000, Replay: clusterRegressions, Workers: 2, Redis: RedisCluster, Root: root, Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + len(clusterRegressions); rep.Schedules != want {
		t.Fatalf("%d schedules ran, want %d", rep.Schedules, want)
	}
	if rep.FaultsByKind[RedisFailover] == 0 || rep.FaultsByKind[RedisMasterKill] == 0 {
		t.Fatalf("faults injected %v: want failovers and master kills", rep.FaultsByKind)
	}
	for _, res := range rep.Results {
		if len(res.InjectErrors) > 0 {
			t.Errorf("%s: faults not applied: %v", res.Schedule, res.InjectErrors)
		}
	}
	if rep.Violations != 0 {
		t.Fatalf("%d violations; reproduce with REDIS=cluster make faults SCHEDULE='<schedule above>'", rep.Violations)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
