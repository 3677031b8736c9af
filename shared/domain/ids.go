package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// MaxIDLength bounds user ids, campaign ids and request ids alike.
const MaxIDLength = 64

// ValidID reports whether s is 1–64 characters of [A-Za-z0-9_-]: the shape the HTTP contract gives user ids, which
// we also require of campaign ids so that both can be embedded in Redis keys without escaping.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidRequestID accepts what clients choose as an idempotency key: 1–64 bytes of printable text.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// NewCampaignID draws a server-assigned campaign id from rnd (crypto/rand in production, a fixed
// reader in tests).
func NewCampaignID(rnd io.Reader) (string, error) {
	var b [10]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("campaign id: %w", err)
	}
	return "cmp_" + hex.EncodeToString(b[:]), nil
}

// ClaimID derives the claim's id from who asked and their idempotency key, so every retry of the
// same request — in Redis, in the queue and in MySQL — names the same claim without coordination.
func ClaimID(userID, requestID string) string {
	h := sha256.Sum256([]byte(userID + "\x00" + requestID))
	return "clm_" + hex.EncodeToString(h[:12])
}

// GrantRequestID is the idempotency key a scheduled grant uses, one per (campaign, user), so that a
// grant run repeated after a crash never gives the same user a second unit.
func GrantRequestID(campaignID string) string {
	return "grant:" + campaignID
}
