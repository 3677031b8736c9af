package auth

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/benefit-issuance/benefits/shared/domain"
)

const secret = "test-secret-0123456789"

func TestAuthenticate(t *testing.T) {
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	v, err := NewVerifier(secret, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	sign := func(c jwt.MapClaims, method jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good, _ := Issue(secret, "u_1", RoleUser, time.Hour, now)
	op, _ := Issue(secret, "ops", RoleOperator, time.Hour, now)
	expired, _ := Issue(secret, "u_1", RoleUser, time.Hour, now.Add(-2*time.Hour))
	forged, _ := Issue("another-secret-0123456789", "u_1", RoleUser, time.Hour, now)
	noExp := sign(jwt.MapClaims{"sub": "u_1", "role": "user"}, jwt.SigningMethodHS256, []byte(secret))
	badSub := sign(jwt.MapClaims{"sub": "u 1", "role": "user", "exp": now.Add(time.Hour).Unix()}, jwt.SigningMethodHS256, []byte(secret))
	longSub := sign(jwt.MapClaims{"sub": strings.Repeat("a", 65), "role": "user", "exp": now.Add(time.Hour).Unix()}, jwt.SigningMethodHS256, []byte(secret))
	badRole := sign(jwt.MapClaims{"sub": "u_1", "role": "admin", "exp": now.Add(time.Hour).Unix()}, jwt.SigningMethodHS256, []byte(secret))
	hs512 := sign(jwt.MapClaims{"sub": "u_1", "role": "user", "exp": now.Add(time.Hour).Unix()}, jwt.SigningMethodHS512, []byte(secret))
	none := sign(jwt.MapClaims{"sub": "u_1", "role": "user", "exp": now.Add(time.Hour).Unix()}, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)

	cases := []struct {
		name   string
		header string
		role   Role
		code   domain.Code
		sub    string
	}{
		{"user on user route", "Bearer " + good, RoleUser, "", "u_1"},
		{"lower-case scheme", "bearer " + good, RoleUser, "", "u_1"},
		{"operator on admin route", "Bearer " + op, RoleOperator, "", "ops"},
		{"operator on user route", "Bearer " + op, RoleUser, domain.CodeForbidden, ""},
		{"user on admin route", "Bearer " + good, RoleOperator, domain.CodeForbidden, ""},
		{"missing", "", RoleUser, domain.CodeUnauthenticated, ""},
		{"basic auth", "Basic dTpw", RoleUser, domain.CodeUnauthenticated, ""},
		{"garbage", "Bearer abc.def.ghi", RoleUser, domain.CodeUnauthenticated, ""},
		{"expired", "Bearer " + expired, RoleUser, domain.CodeUnauthenticated, ""},
		{"forged", "Bearer " + forged, RoleUser, domain.CodeUnauthenticated, ""},
		{"no exp", "Bearer " + noExp, RoleUser, domain.CodeUnauthenticated, ""},
		{"malformed sub", "Bearer " + badSub, RoleUser, domain.CodeUnauthenticated, ""},
		{"long sub", "Bearer " + longSub, RoleUser, domain.CodeUnauthenticated, ""},
		{"unknown role", "Bearer " + badRole, RoleUser, domain.CodeForbidden, ""},
		{"other algorithm", "Bearer " + hs512, RoleUser, domain.CodeUnauthenticated, ""},
		{"alg none", "Bearer " + none, RoleUser, domain.CodeUnauthenticated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			p, err := v.Require(r, tc.role)
			if tc.code == "" {
				if err != nil || p.Subject != tc.sub {
					t.Fatalf("got %+v, %v", p, err)
				}
				return
			}
			if got := domain.CodeOf(err); got != tc.code {
				t.Fatalf("code %s, want %s (%v)", got, tc.code, err)
			}
		})
	}
	if _, err := NewVerifier("short", nil); err == nil {
		t.Fatal("a short secret must be refused")
	}
}
