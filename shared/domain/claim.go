package domain

import "time"

// Claim is one unit of a campaign issued to a user, by their claim or by a scheduled grant.
type Claim struct {
	ID         string    `json:"id"`
	CampaignID string    `json:"campaign_id"`
	UserID     string    `json:"user_id"`
	RequestID  string    `json:"request_id,omitempty"`
	Benefit    Benefit   `json:"benefit"`
	CostPoints int64     `json:"cost_points"`
	GrantedAt  time.Time `json:"granted_at"`
}

// ClaimRequest is the body of POST /v1/claims; the user comes from the token, never the body.
type ClaimRequest struct {
	CampaignID string
	RequestID  string
}

// ClaimState is everything the claim decision looks at, gathered atomically (one Lua call per
// Redis slot in production).
type ClaimState struct {
	Campaign Campaign
	Issued   int64 // units issued or reserved so far
	Held     int64 // units this user already holds
	Profile  Profile
	Now      time.Time
}

// Issuance says who is asking for a unit: a user's claim, or the timer's scheduled grant.
type Issuance int

const (
	ByClaim Issuance = iota
	ByGrant
)

// DecideClaim is the issuing rule, checked in a fixed order so the answer is stable: first what is true
// of the campaign for everyone, then who the user is, then what is left. Points are decided after the
// stock reservation, in the user's own Redis slot (see DecidePoints). It returns "" when the unit may be
// issued. The Lua script claim.lua implements the same order and is tested against this function.
func DecideClaim(s ClaimState, by Issuance) Code {
	c := s.Campaign
	switch {
	case by == ByClaim && c.Mode != ModeClaim, by == ByGrant && c.Mode != ModeGrant:
		return CodeNotClaimable
	case c.Status == StatusPaused:
		return CodePaused
	case s.Now.Before(c.StartsAt):
		return CodeNotStarted
	case !s.Now.Before(c.EndsAt):
		return CodeEnded
	case !c.Audience.Eligible(s.Profile, s.Now):
		return CodeNotEligible
	case s.Held >= c.PerUserLimit:
		return CodeLimitReached
	case Remaining(c.Stock, s.Issued) <= 0:
		return CodeSoldOut
	}
	return ""
}

// DecidePoints is the debit rule: a balance never goes below zero.
func DecidePoints(balance, cost int64) Code {
	if cost > 0 && balance < cost {
		return CodeInsufficientPoints
	}
	return ""
}
