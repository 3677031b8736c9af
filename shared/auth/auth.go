// Package auth verifies the bearer tokens of the HTTP contract (shared/httpapi/openapi.yaml): HS256 JWTs with sub, role and exp.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/benefit-issuance/benefits/shared/domain"
)

type Role string

const (
	RoleOperator Role = "operator"
	RoleUser     Role = "user"
)

// MinSecretLength refuses secrets too short to resist brute force on HS256.
const MinSecretLength = 16

// Principal is who a request acts for.
type Principal struct {
	Subject string
	Role    Role
}

type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Verifier checks tokens against one secret.
type Verifier struct {
	secret []byte
	now    func() time.Time
}

// NewVerifier refuses an empty or short secret: functions must not start without JWT_SECRET.
func NewVerifier(secret string, now func() time.Time) (*Verifier, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("JWT secret must be at least %d bytes", MinSecretLength)
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{secret: []byte(secret), now: now}, nil
}

// Authenticate reads the Authorization header and answers who is calling, or an unauthenticated error.
// Only HS256 is accepted, so a token signed with "none" or an asymmetric algorithm cannot pass.
func (v *Verifier) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return Principal{}, domain.Refuse(domain.CodeUnauthenticated, "missing bearer token")
	}
	var c claims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(token), &c, func(*jwt.Token) (any, error) { return v.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(v.now), jwt.WithLeeway(5*time.Second))
	if err != nil {
		msg := "invalid token"
		if errors.Is(err, jwt.ErrTokenExpired) {
			msg = "token expired"
		}
		return Principal{}, domain.Refuse(domain.CodeUnauthenticated, "%s", msg)
	}
	if !domain.ValidID(c.Subject) {
		return Principal{}, domain.Refuse(domain.CodeUnauthenticated, "token sub must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	role := Role(c.Role)
	if role != RoleOperator && role != RoleUser {
		return Principal{}, domain.Refuse(domain.CodeForbidden, "token role must be operator or user")
	}
	return Principal{Subject: c.Subject, Role: role}, nil
}

// Require authenticates and checks the role: a valid token with the wrong role is forbidden, not
// unauthenticated.
func (v *Verifier) Require(r *http.Request, role Role) (Principal, error) {
	p, err := v.Authenticate(r)
	if err != nil {
		return Principal{}, err
	}
	if p.Role != role {
		return Principal{}, domain.Refuse(domain.CodeForbidden, "this route needs role %s", role)
	}
	return p, nil
}

// Issue signs a token; the local stack and tests use it to hand out operator and user tokens.
func Issue(secret, subject string, role Role, ttl time.Duration, now time.Time) (string, error) {
	c := claims{Role: string(role), RegisteredClaims: jwt.RegisteredClaims{
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}
