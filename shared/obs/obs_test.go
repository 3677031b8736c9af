package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/aliyun/fc-runtime-go-sdk/fccontext"
)

func TestEveryLineNamesTheRequest(t *testing.T) {
	var buf bytes.Buffer
	ctx := WithRequest(context.Background(), NewLogger(&buf, "info", "claim"), "req-42")
	Logger(ctx).Info("granted", "claim_id", "clm_1")
	Logger(ctx).Debug("hidden at info")
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["request_id"] != "req-42" || line["function"] != "claim" || line["msg"] != "granted" {
		t.Fatalf("line lacks context: %v", line)
	}
	Logger(context.Background()).Info("no logger in context must not panic")
}

// Invocation is the one prologue of httpfc, mqhandler (and so the ledger) and the timer: the request
// id comes from the runtime SDK's context.
func TestInvocationNamesTheFCRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"from the runtime", fccontext.NewContext(context.Background(), &fccontext.FcContext{RequestID: "fc-req-7"}), "fc-req-7"},
		{"outside FC", context.Background(), ""},
	} {
		var buf bytes.Buffer
		Logger(Invocation(tc.ctx, NewLogger(&buf, "info", "ledger"))).Info("batch")
		var line map[string]any
		if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
			t.Fatalf("%s: not one JSON line: %q", tc.name, buf.String())
		}
		if id, ok := line["request_id"]; !ok || id != tc.want {
			t.Fatalf("%s: request_id = %v (present %v), want %q", tc.name, id, ok, tc.want)
		}
	}
}
