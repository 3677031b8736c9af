package domain

import "time"

// User is what the rules function keeps of a platform user: enough to decide audiences and to hold
// a points balance.
type User struct {
	ID           string    `json:"id"`
	RegisteredAt time.Time `json:"registered_at"`
	Member       bool      `json:"member"`
	Points       int64     `json:"points"`
	Version      int64     `json:"version"`
}

// Profile is the part of a user the claim decision reads. Known is false for a user never PUT, who is
// eligible for segment all only and holds no points.
type Profile struct {
	Known        bool
	RegisteredAt time.Time
	Member       bool
}

// Eligible decides the audience at the decision time now (the claim's time, or the grant run's).
// A new user is one registered strictly after now − days×24h: on the boundary instant they are no
// longer new.
func (a Audience) Eligible(p Profile, now time.Time) bool {
	switch a.Segment {
	case SegmentAll:
		return true
	case SegmentMembers:
		return p.Known && p.Member
	case SegmentNewUsers:
		if !p.Known || a.NewUserDays == nil {
			return false
		}
		cutoff := now.Add(-time.Duration(*a.NewUserDays) * 24 * time.Hour)
		return p.RegisteredAt.After(cutoff)
	}
	return false
}

// PointsCredit is an operator's credit of points to a user, applied once per request id.
type PointsCredit struct {
	Delta     int64
	RequestID string
}

// UserPut is the body of PUT /v1/users/{id}.
type UserPut struct {
	RegisteredAt time.Time
	Member       bool
}
