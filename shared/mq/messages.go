// Package mq is the RocketMQ side of the protocol: the messages the functions exchange and a publisher
// over the official RocketMQ 5 Go client.
package mq

import (
	"fmt"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// Entities a change event can name.
const (
	EntityCampaign = "campaign"
	EntityUser     = "user"
)

// Tags on the grants and grant-starts topics.
const (
	TagGrant      = "grant"
	TagGrantStart = "grant-start"
	// TagCacheRebuild asks the timer, on the grant-starts topic, to run its cache rebuild now: a claim
	// found the cache's data lost, and the rebuild's own timer comes once a minute at best.
	TagCacheRebuild = "cache-rebuild"
)

// ChangeEvent says "this row changed; read it". It carries no state, so a duplicate, a reordering or a
// replay can never write an old value: the consumer always reads the current row and the cache's
// version fence drops what is not newer.
type ChangeEvent struct {
	Entity  string `json:"entity"`
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// Validate refuses an event no consumer can act on; such an event is poison, not a transient failure.
func (e ChangeEvent) Validate() error {
	if e.Entity != EntityCampaign && e.Entity != EntityUser {
		return fmt.Errorf("change event: unknown entity %q", e.Entity)
	}
	if !domain.ValidID(e.ID) {
		return fmt.Errorf("change event: invalid id %q", e.ID)
	}
	if e.Version < 1 {
		return fmt.Errorf("change event: version %d is not positive", e.Version)
	}
	return nil
}

// DecodeChange parses and validates a change event body strictly.
func DecodeChange(body []byte) (ChangeEvent, error) {
	var e ChangeEvent
	if err := domain.DecodeJSON(body, &e); err != nil {
		return ChangeEvent{}, fmt.Errorf("change event: %w", err)
	}
	return e, e.Validate()
}

// DecodeGrant parses a grant body: the claim as the claim function recorded it.
func DecodeGrant(body []byte) (domain.Claim, error) {
	var c domain.Claim
	if err := domain.DecodeJSON(body, &c); err != nil {
		return domain.Claim{}, fmt.Errorf("grant: %w", err)
	}
	switch {
	case !domain.ValidID(c.ID) || !domain.ValidID(c.CampaignID) || !domain.ValidID(c.UserID):
		return domain.Claim{}, fmt.Errorf("grant: invalid id in %q", body)
	case c.GrantedAt.IsZero():
		return domain.Claim{}, fmt.Errorf("grant %s: granted_at missing", c.ID)
	case c.CostPoints < 0:
		return domain.Claim{}, fmt.Errorf("grant %s: negative cost", c.ID)
	}
	return c, nil
}

// GrantStart says "this grant campaign, as written at this version, starts now": a delay message
// delivered at starts_at so the timer grants on time rather than at its next minute. Like a change
// event it carries no state but the version; the consumer reads the row and drops a stale message.
type GrantStart struct {
	CampaignID string `json:"campaign_id"`
	Version    int64  `json:"version"`
}

// DecodeGrantStart parses and validates a grant-start body strictly.
func DecodeGrantStart(body []byte) (GrantStart, error) {
	var g GrantStart
	if err := domain.DecodeJSON(body, &g); err != nil {
		return GrantStart{}, fmt.Errorf("grant start: %w", err)
	}
	if !domain.ValidID(g.CampaignID) || g.Version < 1 {
		return GrantStart{}, fmt.Errorf("grant start: invalid campaign %q or version %d", g.CampaignID, g.Version)
	}
	return g, nil
}
