// The cache rebuild: a Redis that lost its data reloaded from a MySQL known to hold every
// acknowledged grant.

package timer

import (
	"context"
	"fmt"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// rebuildCampaign restores one absent campaign entry from MySQL plus what is known to be on its way
// there: grants in the Redis stream that the ledger has not written (inFlight) and the reservations
// still held (reserved), each counted once by claim id. It writes only while the entry is still absent.
func (j *Jobs) rebuildCampaign(ctx context.Context, rec domain.CampaignRecord, inFlight []domain.Claim, reserved []domain.Reservation) (bool, error) {
	after := ""
	seen := map[string]bool{}
	var all []domain.Claim
	for {
		page, err := j.store.CampaignClaims(ctx, rec.Campaign.ID, after, 1000)
		if err != nil {
			return false, err
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			seen[c.ID] = true
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	for _, c := range inFlight {
		if !seen[c.ID] { // written by the ledger since the scan: already in the MySQL list
			all = append(all, c)
		}
	}
	// Held counts and claim records come back before stock opens, so a user who already holds the
	// limit cannot claim again and a retried request gets its original answer.
	if err := j.cache.RestoreClaims(ctx, rec.Campaign, all); err != nil {
		return false, err
	}
	// Count the distinct claims, not MySQL's count plus the stream's: a streamed grant the ledger wrote
	// after the scan is in both, and so is a reservation granted and written since it was read.
	held := int64(0)
	for _, r := range reserved {
		if !seen[r.ClaimID] {
			held++
		}
	}
	res, err := j.cache.RepairCampaign(ctx, rec.Campaign, int64(len(all))+held, 0)
	return res.Applied, err
}

// CacheRebuild restores a cache that lost its data (Redis restarted empty): claims answer 503 until it
// is done. It first drains the grant backstop's group to empty (backstop.go), so every grant ever
// acknowledged is in MySQL and stock is never computed from a partial count; a ledger stuck in retries
// delays nothing and fakes nothing. Then campaigns (with held counts and claim records) and users are
// restored and the cache is marked ready.
func (j *Jobs) CacheRebuild(ctx context.Context) (Report, error) {
	var r Report
	ready, err := j.cache.Ready(ctx)
	if err != nil {
		return r, err
	}
	if ready {
		r.Ready = true
		return r, nil
	}
	// Claims decided before the loss may still be publishing; before any claim was possible, none is.
	window := time.Duration(0)
	may, err := j.store.MayHaveGranted(ctx)
	if err != nil {
		return r, err
	}
	if may {
		window = j.cfg.ClaimWindow
	}
	s, err := j.backstop(ctx, session{kind: domain.BackstopDrain, lockWait: j.cfg.DrainLockWait, budget: j.cfg.DrainBudget,
		emptyAfter: window, emptyReceives: j.cfg.DrainEmptyReceives})
	r.Received, r.Inserted = s.received, s.inserted
	if err != nil {
		return r, err
	}
	if !s.drained {
		r.Note = s.note
		if r.Note == "" {
			r.Note = "the grant backstop is still draining; the next run continues"
		}
		return r, nil
	}
	// Another run (the timer's, or a claim's wake) may have rebuilt the cache while this one waited
	// for the backstop's lock and drained.
	if ready, err := j.cache.Ready(ctx); err != nil || ready {
		r.Ready = ready
		return r, err
	}
	camps, err := j.store.LiveCampaigns(ctx, j.now(), j.cfg.ReconcileGrace)
	if err != nil {
		return r, err
	}
	for _, rec := range camps {
		if _, err := j.rebuildCampaign(ctx, rec, nil, nil); err != nil {
			return r, fmt.Errorf("rebuild campaign %s: %w", rec.Campaign.ID, err)
		}
		r.Campaigns++
	}
	after := ""
	for {
		users, err := j.store.Users(ctx, after, 1000)
		if err != nil {
			return r, err
		}
		if len(users) == 0 {
			break
		}
		for _, u := range users {
			if _, err := j.cache.ApplyUser(ctx, domain.UserState{
				ID: u.User.ID, RegisteredAt: u.User.RegisteredAt, Member: u.User.Member,
				Credits: u.Credited, Debits: u.Debited, Version: u.User.Version, Restore: true,
			}); err != nil {
				return r, fmt.Errorf("rebuild user %s: %w", u.User.ID, err)
			}
			r.Users++
		}
		after = users[len(users)-1].User.ID
	}
	if err := j.cache.MarkReady(ctx); err != nil {
		return r, err
	}
	r.Rebuilt, r.Ready = true, true
	return r, nil
}
