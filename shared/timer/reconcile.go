// Reconciliation: MySQL and Redis compared, campaign by campaign and user by user.

package timer

import (
	"context"
	"errors"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
)

// Reconcile compares every live campaign in MySQL and Redis, republishes what drifted and reports it.
func (j *Jobs) Reconcile(ctx context.Context) (Report, error) {
	var r Report
	now := j.now()
	ready, err := j.cache.Ready(ctx)
	if err != nil {
		return r, err
	}
	if !ready {
		r.Note = "cache is not ready; cache-rebuild restores it"
		return r, nil
	}
	camps, err := j.store.LiveCampaigns(ctx, now, j.cfg.ReconcileGrace)
	if err != nil {
		return r, err
	}
	r.Campaigns = len(camps)
	var errs []error
	for _, listed := range camps {
		id := listed.Campaign.ID
		// A unit travels reserved (a points claim awaiting its debit) -> granted (in the stream) ->
		// recorded (MySQL), or reserved -> released; each count below is read at its own moment, so
		// they are read along that flow and joined by claim id. Every unit there is at the first read is
		// then seen (reserved then, or granted, so in the stream or MySQL later), and none twice: a
		// reservation granted or recorded meanwhile is the same claim id. Summed as counts, a
		// reservation granted and recorded before MySQL was read counted twice: the cache seemed behind
		// and the repair raised its issued count one above the truth for good (fault suite, seed 237).
		// Versions and stock are judged on this first read, older than MySQL's row: a change applied
		// meanwhile reads as the cache behind (republished, harmless), never as ahead (rewritten back).
		cc, err := j.cache.Campaign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		reserved, err := j.cache.Reservations(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The stream outlives an evicted campaign entry, so grants on their way to MySQL are counted
		// whether or not the entry is there.
		scan, err := j.scanGrants(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec, err := j.store.Campaign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// MySQL's count, and which of the streamed and reserved claims it has, from one snapshot: a
		// grant the ledger writes between the scan and the count is then counted once.
		ids := make([]string, 0, len(scan.missing)+len(reserved))
		for _, g := range scan.missing {
			ids = append(ids, g.ID)
		}
		for _, r := range reserved {
			ids = append(ids, r.ClaimID)
		}
		issued, recorded, err := j.store.IssuedAndRecorded(ctx, id, ids)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec.Issued = issued
		var stillMissing []domain.Claim
		streamed := map[string]bool{}
		for _, g := range scan.missing {
			if !recorded[g.ID] {
				stillMissing = append(stillMissing, g)
				streamed[g.ID] = true
			}
		}
		var unseen []domain.Reservation // reserved then, neither streamed nor recorded since
		for _, r := range reserved {
			if !recorded[r.ClaimID] && !streamed[r.ClaimID] {
				unseen = append(unseen, r)
			}
		}
		// Of those, the ones still there (reserved, or granted after the scan); a released one is gone.
		held, err := j.cache.Kept(ctx, id, unseen)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// What the cache issues now, for the cache behind MySQL: read after MySQL, it counts every unit
		// MySQL has unless the cache lost it. Read before, grants made meanwhile looked like a loss.
		after, err := j.cache.Campaign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if after.Present != cc.Present || after.Version != cc.Version {
			continue // the campaign changed while this run read it: the next run judges it
		}
		c := rec.Campaign
		inFlight := int64(len(stillMissing) + len(held))
		drift := domain.Reconcile(
			domain.DBView{Version: c.Version, Stock: c.Stock, Issued: rec.Issued},
			domain.CacheView{Present: cc.Present, Version: cc.Version, Stock: cc.Stock, Issued: after.Issued, SealedFor: sealedFor(cc, now), GivingUp: cc.GivingUp},
			inFlight)
		if drift == domain.DriftIssuedAhead && !domain.GrantsLost(cc.Issued-cc.Pending, rec.Issued, int64(len(stillMissing))) {
			drift = domain.DriftNone // granted while this run read, and on its way: nothing is lost
		}
		fix := Fix{Entity: mq.EntityCampaign, ID: c.ID, Drift: string(drift)}
		switch drift {
		case domain.DriftNone:
			continue
		case domain.DriftStaleVersion:
			fix.Action = "republished"
			if err := j.pub.PublishChange(ctx, mq.ChangeEvent{Entity: mq.EntityCampaign, ID: c.ID, Version: c.Version}); err != nil {
				fix.Action = "republish failed: " + err.Error()
				errs = append(errs, err)
			}
		case domain.DriftMissing:
			// The rest of the cache is there (ready is set), so this campaign alone was evicted: rebuild
			// it with the grants still in flight counted and held, or its stock would be sold twice.
			fix.Action = "rebuilt"
			if applied, err := j.rebuildCampaign(ctx, rec, stillMissing, held); err != nil {
				fix.Action = "rebuild failed: " + err.Error()
				errs = append(errs, err)
			} else if !applied {
				fix.Action = "skipped: the entry reappeared meanwhile"
			}
		case domain.DriftAheadVersion, domain.DriftStockMismatch, domain.DriftIssuedBehind, domain.DriftSealed, domain.DriftUndersold:
			fix.Action = "repaired"
			res, err := j.cache.RepairCampaign(ctx, c, rec.Issued+inFlight, cc.Version)
			switch {
			case err != nil:
				fix.Action = "repair failed: " + err.Error()
				errs = append(errs, err)
			case !res.Applied:
				fix.Action = "skipped: the cache changed meanwhile"
			}
		default:
			fix.Action = "reported"
		}
		r.Fixed = append(r.Fixed, fix)
	}
	fixes, users, err := j.reconcileUsers(ctx)
	r.Users = users
	r.Fixed = append(r.Fixed, fixes...)
	if err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// reconcileUsers compares up to UserBudget users' versions in MySQL and Redis, continuing where the
// last run stopped, and republishes those the cache is behind on: a user change whose message ended
// in the dead-letter queue would otherwise never reach the cache.
func (j *Jobs) reconcileUsers(ctx context.Context) ([]Fix, int, error) {
	j.mu.Lock()
	after := j.usersCursor
	j.mu.Unlock()
	var fixes []Fix
	seen := 0
	for seen < j.cfg.UserBudget {
		page, err := j.store.Users(ctx, after, min(500, j.cfg.UserBudget-seen))
		if err != nil {
			return fixes, seen, err
		}
		if len(page) == 0 {
			after = "" // wrapped around: the next run starts again from the first user
			break
		}
		for _, u := range page {
			seen++
			after = u.User.ID
			cu, err := j.cache.User(ctx, u.User.ID)
			if err != nil {
				return fixes, seen, err
			}
			if cu.Present && cu.Version >= u.User.Version {
				continue
			}
			fix := Fix{Entity: mq.EntityUser, ID: u.User.ID, Drift: string(domain.DriftStaleVersion), Action: "republished"}
			if !cu.Present {
				fix.Drift = string(domain.DriftMissing)
			}
			if err := j.pub.PublishChange(ctx, mq.ChangeEvent{Entity: mq.EntityUser, ID: u.User.ID, Version: u.User.Version}); err != nil {
				fix.Action = "republish failed: " + err.Error()
				fixes = append(fixes, fix)
				return fixes, seen, err
			}
			fixes = append(fixes, fix)
		}
	}
	j.mu.Lock()
	j.usersCursor = after
	j.mu.Unlock()
	return fixes, seen, nil
}

// sealedFor is how long cc has had a bucket sealed by a change, at now.
func sealedFor(cc domain.CachedCampaign, now time.Time) time.Duration {
	if cc.SealedSince.IsZero() {
		return 0
	}
	return now.Sub(cc.SealedSince)
}
