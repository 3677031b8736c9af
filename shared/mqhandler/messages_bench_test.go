package mqhandler

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// A trigger batch of 100 events, as the ledger's trigger delivers them (batchWindow 100).
func BenchmarkMessages100(b *testing.B) {
	raw, err := os.ReadFile("../fcevents/testdata/rocketmq-event-batch.json")
	if err != nil {
		b.Fatal(err)
	}
	var evs []json.RawMessage
	if err := json.Unmarshal(raw, &evs); err != nil {
		b.Fatal(err)
	}
	batch := make([]json.RawMessage, 100)
	for i := range batch {
		batch[i] = evs[i%len(evs)]
	}
	payload, err := json.Marshal(batch)
	if err != nil {
		b.Fatal(err)
	}
	payload = bytes.TrimSpace(payload)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Messages(payload); err != nil {
			b.Fatal(err)
		}
	}
}
