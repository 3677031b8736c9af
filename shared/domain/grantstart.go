package domain

import "time"

// A grant campaign starts on time through a delay message for its starts_at, published when the
// campaign is written; the minute timer is only the safety net. A broker holds a delay message for a
// bounded time (RocketMQ's proxy: a day by default), so a start further away is reached in hops: the
// message fires, finds the start still ahead, and is sent again for what is left.

// GrantStartAction is what to do with a grant-start message when it arrives.
type GrantStartAction int

const (
	// GrantStartDrop: the message is stale (the campaign was written again, and that write sent its
	// own message) or the campaign will never be granted from it (paused, ended, not a grant).
	GrantStartDrop GrantStartAction = iota
	// GrantStartRun: starts_at has come; run the scheduled grants now.
	GrantStartRun
	// GrantStartWait: the broker fired a little early; wait until At, then run.
	GrantStartWait
	// GrantStartHop: the start is beyond what one delay can reach; send the message again for At.
	GrantStartHop
)

// GrantStartPlan holds the delays a grant start is scheduled with.
type GrantStartPlan struct {
	MaxDelay  time.Duration // the longest delay the broker takes
	EarlySlop time.Duration // how early a delivery may be and still be waited out rather than re-sent
}

// DefaultGrantStartPlan stays an hour inside the proxy's default one-day limit on delays and waits out
// a delivery up to 5 s early.
func DefaultGrantStartPlan() GrantStartPlan {
	return GrantStartPlan{MaxDelay: 23 * time.Hour, EarlySlop: 5 * time.Second}
}

// Schedule says whether a write of c should send a grant-start message, and for when. A campaign
// that is not an active grant campaign still to start or running needs none.
func (p GrantStartPlan) Schedule(c Campaign, now time.Time) (time.Time, bool) {
	if c.Mode != ModeGrant || c.Status != StatusActive || !now.Before(c.EndsAt) {
		return time.Time{}, false
	}
	return p.deliverAt(c.StartsAt, now), true
}

func (p GrantStartPlan) deliverAt(startsAt, now time.Time) time.Time {
	if !startsAt.After(now) {
		return now
	}
	if p.MaxDelay > 0 && startsAt.Sub(now) > p.MaxDelay {
		return now.Add(p.MaxDelay)
	}
	return startsAt
}

// Next decides what a grant-start message sent for version msgVersion of c does at now; At is when
// to wait until (GrantStartWait) or to send the message again for (GrantStartHop).
func (p GrantStartPlan) Next(c Campaign, msgVersion int64, now time.Time) (GrantStartAction, time.Time) {
	if c.Version != msgVersion {
		return GrantStartDrop, time.Time{}
	}
	if _, ok := p.Schedule(c, now); !ok {
		return GrantStartDrop, time.Time{}
	}
	switch ahead := c.StartsAt.Sub(now); {
	case ahead <= 0:
		return GrantStartRun, time.Time{}
	case ahead <= p.EarlySlop:
		return GrantStartWait, c.StartsAt
	default:
		return GrantStartHop, p.deliverAt(c.StartsAt, now)
	}
}
