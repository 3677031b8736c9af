package conformance

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The Go client's scenarios against the emulator; `go run ./local/cmd/conformance --broker both` runs
// them against Apache RocketMQ too, with the other clients.
func TestGoClientScenariosOnTheEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute of timed redeliveries")
	}
	topics, groups := Resources([]string{goPrefix})
	e, err := StartEmulator(t.TempDir(), topics, groups)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, r := range (GoClient{}).Run(context.Background(), e.Target(), nil) {
		if r.Status != "PASS" {
			t.Errorf("%s: %s %s", r.Scenario, r.Status, r.Detail)
		} else {
			t.Logf("%s passed in %s", r.Scenario, r.Took.Round(1e8))
		}
	}
}

// fakeRunner answers every scenario with a fixed status, and records what it was asked when.
type fakeRunner struct {
	name   string
	status map[string]string // scenario -> status; PASS when missing
	log    *[]string
	mu     *sync.Mutex // guards log when the clients run in parallel
}

func (f fakeRunner) Run(_ context.Context, t Target, names []string) []Result {
	var out []Result
	for _, n := range names {
		if f.mu != nil {
			f.mu.Lock()
		}
		*f.log = append(*f.log, f.name+":"+n)
		if f.mu != nil {
			f.mu.Unlock()
		}
		st := f.status[n]
		if st == "" {
			st = "PASS"
		}
		out = append(out, Result{Scenario: n, Client: f.name, Broker: t.Name, Status: st, Detail: st + " " + n})
	}
	return out
}

// Restart durability runs its two phases for every client around one restart of the broker, and its
// cell passes only when both phases pass.
func TestRunMatrixSharesOneRestartAndCombinesThePhases(t *testing.T) {
	var log []string
	restarts := 0
	target := Target{Name: "b", Restart: func(context.Context) error {
		restarts++
		log = append(log, "restart")
		return nil
	}}
	runners := map[string]Runner{
		"x": fakeRunner{name: "x", log: &log},
		"y": fakeRunner{name: "y", log: &log, status: map[string]string{RestartAfter: "FAIL"}},
		"z": fakeRunner{name: "z", log: &log, status: map[string]string{RestartBefore: "SKIP", RestartAfter: "SKIP"}},
	}
	res := RunMatrix(context.Background(), target, []string{"x", "y", "z"}, runners, []string{Delay, RestartDurable}, false, io.Discard)
	want := "x:delay y:delay z:delay x:restart-durability/before y:restart-durability/before z:restart-durability/before restart " +
		"x:restart-durability/after y:restart-durability/after z:restart-durability/after"
	if got := strings.Join(log, " "); got != want || restarts != 1 {
		t.Fatalf("calls %q (%d restarts), want %q", got, restarts, want)
	}
	cells := map[string]string{}
	for _, r := range res {
		cells[r.Scenario+"/"+r.Client] = r.Status
	}
	for k, v := range map[string]string{"delay/x": "PASS", "restart-durability/x": "PASS", "restart-durability/y": "FAIL", "restart-durability/z": "SKIP"} {
		if cells[k] != v {
			t.Errorf("%s: %s, want %s (all: %v)", k, cells[k], v, cells)
		}
	}
	if len(res) != 6 {
		t.Errorf("%d results, want 6: %v", len(res), res)
	}

	// A failed restart fails every client's cell even when both phases pass.
	target.Restart = func(context.Context) error { return errors.New("no") }
	res = RunMatrix(context.Background(), target, []string{"x"}, runners, []string{RestartDurable}, false, io.Discard)
	if len(res) != 1 || res[0].Status != "FAIL" || !strings.Contains(res[0].Detail, "restart") {
		t.Errorf("after a failed restart: %+v", res)
	}
}

// In parallel, every client's phase ends before the restart, and the results keep the clients' order.
func TestRunMatrixInParallel(t *testing.T) {
	var log []string
	var mu sync.Mutex
	target := Target{Name: "b", Restart: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, "restart")
		return nil
	}}
	runners := map[string]Runner{}
	clients := []string{"a", "b", "c", "d"}
	for _, c := range clients {
		runners[c] = fakeRunner{name: c, log: &log, mu: &mu, status: map[string]string{Delay: "FAIL"}}
	}
	res := RunMatrix(context.Background(), target, clients, runners, []string{Delay, RestartDurable}, true, io.Discard)
	at := slices.Index(log, "restart")
	for i, l := range log {
		if (strings.HasSuffix(l, RestartBefore) || strings.HasSuffix(l, Delay)) != (i < at) {
			t.Errorf("%s at %d, the restart at %d: %v", l, i, at, log)
		}
	}
	var got []string
	for _, r := range res {
		got = append(got, r.Client+":"+r.Scenario+":"+r.Status)
	}
	want := "a:delay:FAIL b:delay:FAIL c:delay:FAIL d:delay:FAIL a:restart-durability:PASS b:restart-durability:PASS c:restart-durability:PASS d:restart-durability:PASS"
	if strings.Join(got, " ") != want {
		t.Errorf("results %v, want %s", got, want)
	}
}
