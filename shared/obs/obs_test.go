package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
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
