package fcevents

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/shared/fcevents/fcevtest"
)

// Every fixture decodes into the type our functions read it with and encodes back to the same JSON,
// as aws-lambda-go proves its events: a field the type dropped or rewrote fails here.
func TestFixturesRoundTrip(t *testing.T) {
	cases := []struct {
		file string
		into func() any
	}{
		{"testdata/rocketmq-event.json", func() any { return new(RocketMQEvent) }},
		{"testdata/rocketmq-event-batch.json", func() any { return new([]RocketMQEvent) }},
		{"testdata/rocketmq-event-batch-uniq-key.json", func() any { return new([]RocketMQEvent) }},
		{"testdata/timer-event.json", func() any { return new(events.TimerEvent) }},
		{"testdata/http-event-repeated-keys.json", func() any { return new(events.HTTPTriggerEvent) }},
		{"testdata/http-event-base64.json", func() any { return new(events.HTTPTriggerEvent) }},
		{"../httpfc/testdata/http-trigger-event.json", func() any { return new(events.HTTPTriggerEvent) }},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) { fcevtest.RoundTripFile(t, tc.file, tc.into()) })
	}
}

// What the fixtures say is read as our functions need it.
func TestFixtureValues(t *testing.T) {
	var batch []RocketMQEvent
	fcevtest.RoundTripFile(t, "testdata/rocketmq-event-batch-uniq-key.json", &batch)
	if len(batch) != 2 {
		t.Fatalf("%d events", len(batch))
	}
	sp := batch[0].Data.SystemProperties
	for name, want := range map[string]string{
		PropertyMsgID: "7F00000100207E6E5D6C1D6F1A2B0001", PropertyKeys: "clm_a1", PropertyTags: "grant",
		"CONSUME_START_TIME": "1795572001250", "RECONSUME_TIMES": "0", "TRACE_ON": "true", "ABSENT": "",
	} {
		if got := sp.Get(name); got != want {
			t.Errorf("systemProperties %s = %q, want %q", name, got, want)
		}
	}
	if u := batch[0].Data.UserProperties.Strings(); u["origin"] != "claim" || len(u) != 1 {
		t.Errorf("userProperties %v", u)
	}
	if batch[1].Data.SystemProperties.Get("RECONSUME_TIMES") != "2" {
		t.Errorf("second event's RECONSUME_TIMES = %q", batch[1].Data.SystemProperties.Get("RECONSUME_TIMES"))
	}

	var timer events.TimerEvent
	fcevtest.RoundTripFile(t, "testdata/timer-event.json", &timer)
	if timer.TriggerName == nil || *timer.TriggerName != "scheduled-grants" || timer.Payload == nil || *timer.Payload != "scheduled-grants" {
		t.Errorf("timer event %+v", timer)
	}

	var rep events.HTTPTriggerEvent
	fcevtest.RoundTripFile(t, "testdata/http-event-repeated-keys.json", &rep)
	// FC joins the values of a repeated key with commas into one value.
	if h := *rep.Headers; h["Accept"] != "application/json, text/plain" || (*rep.QueryParameters)["tag"] != "a,b" {
		t.Errorf("repeated keys: headers %v query %v", h, *rep.QueryParameters)
	}

	var b64 events.HTTPTriggerEvent
	fcevtest.RoundTripFile(t, "testdata/http-event-base64.json", &b64)
	body, err := base64.StdEncoding.DecodeString(*b64.Body)
	if err != nil || !*b64.IsBase64Encoded || string(body) != `{"stock": 10}` || !strings.Contains(*b64.RawPath, "%5F") {
		t.Errorf("base64 event: body %q (%v), rawPath %q", body, err, *b64.RawPath)
	}
}
