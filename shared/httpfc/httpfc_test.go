package httpfc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/aliyun/fc-runtime-go-sdk/events"
)

func TestHandlerRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("testdata/http-trigger-event.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.HTTPTriggerEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	var seen struct {
		method, path, query, auth, body, host, remote string
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.method, seen.path, seen.query = r.Method, r.URL.Path, r.URL.Query().Get("cursor")
		seen.auth, seen.body, seen.host, seen.remote = r.Header.Get("Authorization"), string(b), r.Host, r.RemoteAddr
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	resp, err := Handler(h, slog.Default())(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	want := struct{ method, path, query, auth, body, host, remote string }{
		"POST", "/v1/claims", "abc def", "Bearer token", `{"campaign_id":"cmp_1","request_id":"r-1"}`, "claims.example.com", "10.0.0.1",
	}
	if seen != want {
		t.Fatalf("handler saw %+v, want %+v", seen, want)
	}
	if resp.StatusCode != 201 || resp.Body != `{"ok":true}` || resp.IsBase64Encoded || resp.Headers["X-Multi"] != "a, b" {
		t.Fatalf("response %+v", resp)
	}
}

func TestBinaryBodyIsBase64(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte{0xff, 0x00, 0xfe}) })
	path, method := "/bin", "GET"
	ev := events.HTTPTriggerEvent{RawPath: &path}
	ev.TriggerContext.Http.Method = &method
	resp, _ := Handler(h, slog.Default())(context.Background(), ev)
	b, err := base64.StdEncoding.DecodeString(resp.Body)
	if !resp.IsBase64Encoded || err != nil || string(b) != "\xff\x00\xfe" || resp.StatusCode != 200 {
		t.Fatalf("binary body: %+v", resp)
	}
}

func TestMalformedEventAnswers400(t *testing.T) {
	called := false
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
	cases := []events.HTTPTriggerEvent{}
	bad := "not a path"
	cases = append(cases, events.HTTPTriggerEvent{RawPath: &bad})
	body, yes := "%%%not base64", true
	p := "/x"
	cases = append(cases, events.HTTPTriggerEvent{RawPath: &p, Body: &body, IsBase64Encoded: &yes})
	for i, ev := range cases {
		resp, err := Handler(h, slog.Default())(context.Background(), ev)
		if err != nil || resp.StatusCode != 400 || called {
			t.Fatalf("case %d: %+v %v called=%v", i, resp, err, called)
		}
	}
}
