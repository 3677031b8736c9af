package fcevents

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

func TestDecodeRocketMQFixtures(t *testing.T) {
	cases := []struct {
		file     string
		count    int
		firstTag string
	}{
		{"testdata/rocketmq-event.json", 1, "campaign"},
		{"testdata/rocketmq-event-batch.json", 2, "campaign"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			events, err := DecodeRocketMQ(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != tc.count {
				t.Fatalf("%d events, want %d", len(events), tc.count)
			}
			ev := events[0]
			if ev.Data.SystemProperties.Get(PropertyTags) != tc.firstTag || ev.Data.Topic != "benefit-rule-changes" {
				t.Fatalf("decoded wrongly: %+v", ev.Data)
			}
			if ev.Data.SystemProperties.Get("CONSUME_START_TIME") != "1628577790396" {
				t.Fatalf("numeric property not read as text: %q", ev.Data.SystemProperties.Get("CONSUME_START_TIME"))
			}
			// Round trip: encoding what we decoded and decoding it again changes nothing.
			again, err := json.Marshal(events)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeRocketMQ(again)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, events) {
				t.Fatalf("round trip changed the events:\n%+v\n%+v", back, events)
			}
		})
	}
}

func TestDecodeRocketMQRefusesGarbage(t *testing.T) {
	for _, in := range []string{``, `   `, `{`, `[{]`, `"x"`, `{"data": 5}`, `[{"data":{"systemProperties":[1]}}]`} {
		if _, err := DecodeRocketMQ([]byte(in)); err == nil {
			t.Errorf("DecodeRocketMQ(%q) succeeded", in)
		}
	}
}
