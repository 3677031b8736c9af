package domain

import (
	"sort"
	"time"
)

// GrantCandidate is a user considered by a scheduled grant run.
type GrantCandidate struct {
	UserID       string
	RegisteredAt time.Time
	Member       bool
	AlreadyHeld  bool // already granted by an earlier (possibly interrupted) run
}

// GrantDue reports whether a grant campaign should be run at now: active, started, not ended.
func GrantDue(c Campaign, now time.Time) bool {
	return c.Mode == ModeGrant && c.Status == StatusActive && !now.Before(c.StartsAt) && now.Before(c.EndsAt)
}

// SelectGrantees picks who receives a unit in this run: eligible users, oldest registration first (ties
// by id, so reruns choose the same people), skipping those already granted, until remaining runs out.
// It never returns a user twice and never more than remaining.
func SelectGrantees(c Campaign, candidates []GrantCandidate, remaining int64, now time.Time) []string {
	if remaining <= 0 {
		return nil
	}
	sorted := append([]GrantCandidate(nil), candidates...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].RegisteredAt.Equal(sorted[j].RegisteredAt) {
			return sorted[i].RegisteredAt.Before(sorted[j].RegisteredAt)
		}
		return sorted[i].UserID < sorted[j].UserID
	})
	seen := make(map[string]bool, len(sorted))
	var out []string
	for _, u := range sorted {
		if int64(len(out)) >= remaining {
			break
		}
		if u.AlreadyHeld || seen[u.UserID] {
			continue
		}
		seen[u.UserID] = true
		p := Profile{Known: true, RegisteredAt: u.RegisteredAt, Member: u.Member}
		if c.Audience.Eligible(p, now) {
			out = append(out, u.UserID)
		}
	}
	return out
}
