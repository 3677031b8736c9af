package domain

import (
	"strings"
	"time"
	"unicode/utf8"
)

type BenefitType string

const (
	BenefitCoupon      BenefitType = "coupon"
	BenefitRedEnvelope BenefitType = "red_envelope"
	BenefitPoints      BenefitType = "points"
)

type Segment string

const (
	SegmentAll      Segment = "all"
	SegmentNewUsers Segment = "new_users"
	SegmentMembers  Segment = "members"
)

type Mode string

const (
	// ModeClaim campaigns are claimed by users through the claim API.
	ModeClaim Mode = "claim"
	// ModeGrant campaigns are handed out by the timer at starts_at; nobody claims them.
	ModeGrant Mode = "grant"
)

type Status string

const (
	StatusActive Status = "active"
	StatusPaused Status = "paused"
)

// Limits on operator input. They exist so that an absurd number is refused at the door instead of
// overflowing a Lua double (2^53) or a counter somewhere downstream.
const (
	MaxNameLength   = 200
	MaxAmount       = 1_000_000_000_000
	MaxStock        = 1_000_000_000
	MaxPerUserLimit = 1_000_000
	MaxCostPoints   = 1_000_000_000
	MinNewUserDays  = 1
	MaxNewUserDays  = 3650
	MaxPointsDelta  = 1_000_000_000
	MaxBuckets      = 64
)

type Benefit struct {
	Type   BenefitType `json:"type"`
	Amount int64       `json:"amount"`
}

type Audience struct {
	Segment Segment `json:"segment"`
	// NewUserDays is set only for SegmentNewUsers; nil elsewhere so that a stray value is refused
	// rather than silently ignored.
	NewUserDays *int `json:"new_user_days,omitempty"`
}

// Campaign is an operator's rule: what benefit, to whom, at what points cost, when and how many.
type Campaign struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Benefit      Benefit   `json:"benefit"`
	Audience     Audience  `json:"audience"`
	CostPoints   int64     `json:"cost_points"`
	Mode         Mode      `json:"mode"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	Stock        int64     `json:"stock"`
	PerUserLimit int64     `json:"per_user_limit"`
	Status       Status    `json:"status"`
	// Buckets is how many parts the stock is split into in Redis, each in a hash slot of its own, so
	// that one hot campaign's claims spread over a cluster's masters (see StockBuckets). Fixed at
	// creation: a user's claims and held count live in the bucket their id hashes to among Buckets.
	// 0 means 1.
	Buckets int   `json:"buckets"`
	Version int64 `json:"version"`
}

// Validate checks every writable field and names the first bad one. It is the single gate for both
// creation and patching: a patch is merged first, then the whole campaign is validated again.
func (c Campaign) Validate() error {
	name := strings.TrimSpace(c.Name)
	switch {
	case name == "":
		return Invalid("name", "must not be empty")
	case utf8.RuneCountInString(c.Name) > MaxNameLength:
		return Invalid("name", "must be at most %d characters", MaxNameLength)
	}
	switch c.Benefit.Type {
	case BenefitCoupon, BenefitRedEnvelope, BenefitPoints:
	default:
		return Invalid("benefit.type", "must be one of coupon, red_envelope, points")
	}
	if c.Benefit.Amount <= 0 || c.Benefit.Amount > MaxAmount {
		return Invalid("benefit.amount", "must be between 1 and %d (minor units)", int64(MaxAmount))
	}
	switch c.Audience.Segment {
	case SegmentAll, SegmentMembers:
		if c.Audience.NewUserDays != nil {
			return Invalid("audience.new_user_days", "is only allowed with segment new_users")
		}
	case SegmentNewUsers:
		if c.Audience.NewUserDays == nil {
			return Invalid("audience.new_user_days", "is required with segment new_users")
		}
		if d := *c.Audience.NewUserDays; d < MinNewUserDays || d > MaxNewUserDays {
			return Invalid("audience.new_user_days", "must be between %d and %d", MinNewUserDays, MaxNewUserDays)
		}
	default:
		return Invalid("audience.segment", "must be one of all, new_users, members")
	}
	if c.CostPoints < 0 || c.CostPoints > MaxCostPoints {
		return Invalid("cost_points", "must be between 0 and %d", MaxCostPoints)
	}
	switch c.Mode {
	case ModeClaim:
	case ModeGrant:
		// A grant nobody asked for must not take points from anyone.
		if c.CostPoints != 0 {
			return Invalid("cost_points", "must be 0 for mode grant")
		}
	default:
		return Invalid("mode", "must be one of claim, grant")
	}
	if c.StartsAt.IsZero() {
		return Invalid("starts_at", "is required")
	}
	if c.EndsAt.IsZero() {
		return Invalid("ends_at", "is required")
	}
	if !c.EndsAt.After(c.StartsAt) {
		return Invalid("ends_at", "must be after starts_at")
	}
	if c.Stock < 0 || c.Stock > MaxStock {
		return Invalid("stock", "must be between 0 and %d", MaxStock)
	}
	if c.PerUserLimit < 1 || c.PerUserLimit > MaxPerUserLimit {
		return Invalid("per_user_limit", "must be between 1 and %d", MaxPerUserLimit)
	}
	switch c.Status {
	case StatusActive, StatusPaused:
	default:
		return Invalid("status", "must be one of active, paused")
	}
	if c.Buckets < 0 || c.Buckets > MaxBuckets {
		return Invalid("buckets", "must be between 1 and %d", MaxBuckets)
	}
	return nil
}

// Remaining is what may still be issued: never negative, so lowering stock below what was already
// issued closes the campaign instead of owing units.
func Remaining(stock, issued int64) int64 {
	if issued >= stock {
		return 0
	}
	return stock - issued
}

// CampaignPatch carries the fields an operator asked to change; nil means untouched.
type CampaignPatch struct {
	Name         *string
	Benefit      *Benefit
	Audience     *Audience
	CostPoints   *int64
	StartsAt     *time.Time
	EndsAt       *time.Time
	Stock        *int64
	PerUserLimit *int64
	Status       *Status
}

// Empty reports whether the patch changes nothing, so callers can refuse a no-op write that would
// still bump the version.
func (p CampaignPatch) Empty() bool {
	return p == CampaignPatch{}
}

// Apply returns the campaign with the patch merged and validated; the version is not touched here
// because only the store knows the next one.
func (p CampaignPatch) Apply(c Campaign) (Campaign, error) {
	if p.Name != nil {
		c.Name = *p.Name
	}
	if p.Benefit != nil {
		c.Benefit = *p.Benefit
	}
	if p.Audience != nil {
		c.Audience = *p.Audience
	}
	if p.CostPoints != nil {
		c.CostPoints = *p.CostPoints
	}
	if p.StartsAt != nil {
		c.StartsAt = *p.StartsAt
	}
	if p.EndsAt != nil {
		c.EndsAt = *p.EndsAt
	}
	if p.Stock != nil {
		c.Stock = *p.Stock
	}
	if p.PerUserLimit != nil {
		c.PerUserLimit = *p.PerUserLimit
	}
	if p.Status != nil {
		c.Status = *p.Status
	}
	if err := c.Validate(); err != nil {
		return Campaign{}, err
	}
	return c, nil
}
