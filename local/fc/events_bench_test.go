package fc

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/fctemplate"
)

// A ledger batch of 100 grants as the trigger encodes it for the function.
func BenchmarkCloudEvents100(b *testing.B) {
	e := &Emulator{cfg: Config{Region: "cn-hangzhou", AccountID: "1234567890"}}
	tr := &mqTrigger{e: e, name: "grants", src: fctemplate.SourceRocketMQParameters{InstanceId: "rmq-local", Topic: "benefit-grants"}}
	born := time.Now()
	ms := make([]delivered, 100)
	for i := range ms {
		ms[i] = delivered{ID: fmt.Sprintf("7F00000100%04d", i), Topic: "benefit-grants", Tag: "grant", Keys: []string{fmt.Sprintf("clm_%d", i)},
			Body: []byte(`{"id":"clm_a1","campaign_id":"c1","user_id":"u1","request_id":"r1","cost_points":0,"status":"granted"}`), Born: born}
	}
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		evs := make([]cloudEvent, 0, len(ms))
		for _, m := range ms {
			evs = append(evs, tr.cloudEvent(m, 1, now))
		}
		if _, err := json.Marshal(evs); err != nil {
			b.Fatal(err)
		}
	}
}
