package wiring

import (
	"os/exec"
	"strings"
	"testing"
)

// The functions that never talk to the broker must not link its client: with its gRPC, protobuf and
// OpenTelemetry dependencies it made each of them 8 MB larger (issue #13's binary row), and an
// import of package mq's client side or of mqwiring brings it back.
func TestFunctionsWithoutABrokerDoNotLinkItsClient(t *testing.T) {
	const client = "github.com/apache/rocketmq-clients/golang/v5"
	for _, tc := range []struct {
		function   string
		wantClient bool
	}{
		{"ledger", false},
		{"cachesync", false},
		{"claim", true}, // the check itself must be able to see the client where it is linked
	} {
		t.Run(tc.function, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "../../functions/"+tc.function).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			linked := false
			for _, pkg := range strings.Fields(string(out)) {
				if pkg == client {
					linked = true
				}
			}
			if linked != tc.wantClient {
				t.Fatalf("%s links %s: %v, want %v", tc.function, client, linked, tc.wantClient)
			}
		})
	}
}
