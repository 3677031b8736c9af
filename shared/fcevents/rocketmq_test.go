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

// A consumer's decode reads what the full one reads: for every fixture, and for property values that
// are numbers, null, absent or escaped strings, and names that differ from FC's only in case.
func TestDecodeRocketMQDeliveriesAgreesWithTheFullDecode(t *testing.T) {
	inputs := map[string][]byte{
		"odd properties": []byte(`[{"id":"e1","data":{"topic":"t","systemProperties":{"TAGS":7,"KEYS":null,"UNIQ_KEY":"a\u0062c","tags":"lower","Uniq_Key":"other"},"userProperties":{"n":1.5,"s":"x y"},"body":"{\"k\":1}"}},` +
			`{"id":"e2","data":{"topic":"t","systemProperties":{"tags":"lower","Keys":"k"},"body":""}},` +
			`{"id":"e3","data":{"topic":"t","body":""}}]`),
	}
	for _, f := range []string{"testdata/rocketmq-event.json", "testdata/rocketmq-event-batch.json", "testdata/rocketmq-event-batch-uniq-key.json"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = raw
	}
	for name, raw := range inputs {
		t.Run(name, func(t *testing.T) {
			full, err := DecodeRocketMQ(raw)
			if err != nil {
				t.Fatal(err)
			}
			lean, err := DecodeRocketMQDeliveries(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(lean) != len(full) {
				t.Fatalf("%d deliveries, %d events", len(lean), len(full))
			}
			for i, ev := range full {
				d := lean[i]
				got := []string{d.ID, d.Data.Topic, d.Data.Body, d.Tag(), d.Keys(), d.MessageID()}
				want := []string{ev.ID, ev.Data.Topic, ev.Data.Body, ev.Data.SystemProperties.Get(PropertyTags),
					ev.Data.SystemProperties.Get(PropertyKeys), ev.Data.SystemProperties.Get(PropertyMsgID)}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("event %d: delivery %q, event %q", i, got, want)
				}
				if !reflect.DeepEqual(d.Data.UserProperties.Strings(), ev.Data.UserProperties.Strings()) {
					t.Errorf("event %d: user properties %v, want %v", i, d.Data.UserProperties.Strings(), ev.Data.UserProperties.Strings())
				}
			}
		})
	}
}

func TestDecodeRocketMQDeliveriesRefusesGarbage(t *testing.T) {
	for _, in := range []string{``, `   `, `{`, `[{]`, `"x"`, `{"data": 5}`, `[{"data":{"systemProperties":[1]}}]`} {
		if _, err := DecodeRocketMQDeliveries([]byte(in)); err == nil {
			t.Errorf("DecodeRocketMQDeliveries(%q) succeeded", in)
		}
	}
}
