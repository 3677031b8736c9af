package conformance

import (
	"context"
	"errors"
	"io"
	"strings"
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
}

func (f fakeRunner) Run(_ context.Context, t Target, names []string) []Result {
	var out []Result
	for _, n := range names {
		*f.log = append(*f.log, f.name+":"+n)
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
	res := RunMatrix(context.Background(), target, []string{"x", "y", "z"}, runners, []string{Delay, RestartDurable}, io.Discard)
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
	res = RunMatrix(context.Background(), target, []string{"x"}, runners, []string{RestartDurable}, io.Discard)
	if len(res) != 1 || res[0].Status != "FAIL" || !strings.Contains(res[0].Detail, "restart") {
		t.Errorf("after a failed restart: %+v", res)
	}
}
