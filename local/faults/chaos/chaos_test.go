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
var regressions = []string{}

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
	rep, err := Run(ctx, Config{Schedules: 8, Seed: 9000, Replay: regressions, Root: root, Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if want := 8 + len(regressions); rep.Schedules != want {
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
