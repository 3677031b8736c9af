package conformance

import (
	"context"
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
