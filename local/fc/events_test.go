package fc

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/events"

	"github.com/benefit-issuance/benefits/local/fctemplate"
	"github.com/benefit-issuance/benefits/shared/fcevents"
	"github.com/benefit-issuance/benefits/shared/fcevents/fcevtest"
	"github.com/benefit-issuance/benefits/shared/httpfc"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
)

// The events the emulator sends are proven against the same types and fixtures check as FC's own
// (shared/fcevents): decoded, encoded again and compared as JSON, then read the way the functions read
// them.
func TestEmulatorHTTPEventIsFCs(t *testing.T) {
	body := []byte{0xff, 0xfe, 'x'} // not UTF-8: FC sends it base64-encoded
	r := httptest.NewRequest("PATCH", "http://api.example.com/v1/campaigns/cmp%5F1?tag=a&tag=b&cursor=c", strings.NewReader(string(body)))
	r.Header.Add("Accept", "application/json")
	r.Header.Add("Accept", "text/plain")
	r.Header.Set("If-Match", `"3"`)
	raw, err := httpEvent(r, "1234567890")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.HTTPTriggerEvent
	fcevtest.RoundTrip(t, raw, &ev)
	// A repeated key arrives as one comma-joined value, headers and query alike.
	if q := *ev.QueryParameters; q["tag"] != "a,b" || q["cursor"] != "c" {
		t.Errorf("queryParameters %v, want tag a,b", q)
	}
	if h := *ev.Headers; h["Accept"] != "application/json,text/plain" {
		t.Errorf("Accept header %q", h["Accept"])
	}
	if !*ev.IsBase64Encoded || *ev.RawPath != "/v1/campaigns/cmp%5F1" {
		t.Errorf("isBase64Encoded %v rawPath %q", *ev.IsBase64Encoded, *ev.RawPath)
	}
	req, err := httpfc.Request(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(req.Body)
	if req.Method != "PATCH" || req.URL.Path != "/v1/campaigns/cmp_1" || string(got) != string(body) || req.Header.Get("If-Match") != `"3"` {
		t.Errorf("the function would see %s %s body %q If-Match %q", req.Method, req.URL.Path, got, req.Header.Get("If-Match"))
	}
}

func TestEmulatorTimerEventIsFCs(t *testing.T) {
	var ev events.TimerEvent
	fcevtest.RoundTrip(t, timerEvent("scheduled-grants", "scheduled-grants", time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)), &ev)
	if *ev.TriggerName != "scheduled-grants" || *ev.Payload != "scheduled-grants" || *ev.TriggerTime != "2026-11-25T02:00:00Z" {
		t.Errorf("timer event %+v", ev)
	}
}

func TestEmulatorRocketMQEventIsFCs(t *testing.T) {
	e := &Emulator{cfg: Config{Region: "cn-hangzhou", AccountID: "1234567890"}}
	tr := &mqTrigger{e: e, name: "grants", src: fctemplate.SourceRocketMQParameters{InstanceId: "rmq-local", Topic: "benefit-grants"}}
	born := time.Date(2026, 11, 25, 2, 0, 1, 3_000_000, time.UTC)
	evs := []cloudEvent{
		tr.cloudEvent(delivered{ID: "7F0000010001", Topic: "benefit-grants", Tag: "grant", Keys: []string{"clm_a1"},
			Props: map[string]string{"origin": "claim"}, Body: []byte(`{"id":"clm_a1"}`), Born: born}, 3, born.Add(time.Second)),
		tr.cloudEvent(delivered{ID: "7F0000010002", Topic: "benefit-grants", Body: []byte(`{}`), Born: born}, 1, born.Add(time.Second)),
	}
	raw, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	var decoded []fcevents.RocketMQEvent
	fcevtest.RoundTrip(t, raw, &decoded)
	sp := decoded[0].Data.SystemProperties
	if sp.Get(fcevents.PropertyMsgID) != "7F0000010001" || sp.Get("RECONSUME_TIMES") != "2" || sp.Get("CONSUME_START_TIME") != strconv.FormatInt(born.Add(time.Second).UnixMilli(), 10) {
		t.Errorf("system properties %v", sp.Strings())
	}
	if n := string(sp["BORN_TIMESTAMP"]); n != strconv.FormatInt(born.UnixMilli(), 10) {
		t.Errorf("BORN_TIMESTAMP %s, want a JSON number as FC sends", n)
	}
	msgs, err := mqhandler.Messages(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].ID != "7F0000010001" || msgs[0].Tag != "grant" || len(msgs[0].Keys) != 1 || msgs[0].Keys[0] != "clm_a1" ||
		string(msgs[0].Body) != `{"id":"clm_a1"}` || msgs[0].Properties["origin"] != "claim" || msgs[1].Tag != "" {
		t.Errorf("messages %+v", msgs)
	}
}
