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
	// The client, its protocol package alone (gRPC and protobuf) or gRPC by another way.
	linksClient := func(pkg string) bool {
		return strings.HasPrefix(pkg, "github.com/apache/rocketmq-clients/golang/v5") || strings.HasPrefix(pkg, "google.golang.org/grpc")
	}
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
			var linked []string
			for _, pkg := range strings.Fields(string(out)) {
				if linksClient(pkg) {
					linked = append(linked, pkg)
				}
			}
			if (len(linked) > 0) != tc.wantClient {
				t.Fatalf("%s links the RocketMQ client or gRPC: %v, want %v (%v)", tc.function, len(linked) > 0, tc.wantClient, linked)
			}
		})
	}
}
