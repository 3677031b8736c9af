package claiming_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/claiming"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/httpfc"
)

type soldOutDecider struct{}

func (soldOutDecider) Claim(context.Context, domain.ClaimInput) (domain.ClaimOutcome, error) {
	return domain.ClaimOutcome{Code: domain.CodeSoldOut}, nil
}

// The claim function's own work for a refusal, without Redis or a socket: the token check, the body,
// the error envelope, and the request logger the custom runtime adds (httpfc.WithRequestLog). About
// 14 µs here, of the 64 µs of CPU the claim function took per refusal in make bench (the rest is
// net/http's serving and the Redis round trip, mostly their syscalls); the JWT's JSON is a third of it.
func BenchmarkRefusal(b *testing.B) {
	v, err := auth.NewVerifier(secret, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := auth.Issue(secret, "u1", auth.RoleUser, time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := httpfc.WithRequestLog(claiming.New(soldOutDecider{}, nil, nil, v, time.Now, claiming.Config{}), log)
	body := `{"campaign_id":"c1","request_id":"r1"}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/claims", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Fc-Request-Id", "req-1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), string(domain.CodeSoldOut)) {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
