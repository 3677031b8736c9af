package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

type unavailable struct{ err *domain.Error }

func (u unavailable) Error() string           { return u.err.Error() }
func (u unavailable) Unwrap() error           { return u.err }
func (unavailable) RetryAfter() time.Duration { return 3 * time.Second }

func TestRouterAndErrors(t *testing.T) {
	rt := NewRouter()
	rt.Handle("GET", "/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) error {
		switch r.PathValue("id") {
		case "boom":
			return errors.New("database on fire")
		case "panic":
			panic("bad")
		case "busy":
			return unavailable{domain.Refuse(domain.CodeUnavailable, "rebuilding")}
		}
		WriteJSON(w, 200, map[string]string{"id": r.PathValue("id")})
		return nil
	})
	rt.Handle("POST", "/v1/things", func(w http.ResponseWriter, r *http.Request) error {
		b, err := ReadBody(r)
		if err != nil {
			return err
		}
		_, err = domain.DecodeClaimRequest(b)
		return err
	})
	cases := []struct {
		method, path, body string
		status             int
		code               string
		retryAfter         string
	}{
		{"GET", "/v1/things/a", "", 200, "", ""},
		{"GET", "/v1/nothing", "", 404, "not_found", ""},
		{"DELETE", "/v1/things/a", "", 405, "method_not_allowed", ""},
		{"GET", "/v1/things/boom", "", 500, "internal", ""},
		{"GET", "/v1/things/panic", "", 500, "internal", ""},
		{"GET", "/v1/things/busy", "", 503, "unavailable", "3"},
		{"POST", "/v1/things", `{"x":1}`, 400, "invalid_request", ""},
		{"POST", "/v1/things", `{"request_id":"` + strings.Repeat("a", 70000) + `"}`, 413, "payload_too_large", ""},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d (%s)", tc.method, tc.path, rec.Code, tc.status, rec.Body)
			continue
		}
		if tc.code != "" {
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Errorf("%s %s: body %s", tc.method, tc.path, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "fire") {
				t.Errorf("internal error leaked: %s", rec.Body)
			}
		}
		if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
			t.Errorf("%s %s: Retry-After %q, want %q", tc.method, tc.path, got, tc.retryAfter)
		}
	}
}
