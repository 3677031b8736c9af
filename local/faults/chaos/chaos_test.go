package chaos

import (
	"context"
	"os"
	"testing"
	"time"

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

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
