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
		// A unit travels reserved (pending in Redis) -> granted (in the stream) -> recorded (MySQL), and
		// each count below is read at its own moment. The cache is read twice: before the stream scan
		// and MySQL, for what it had granted then, all of which must be in the stream or MySQL by now
		// (lost grants, if not); and after them, for what it issues and holds reserved, none of which
		// can be in the stream or MySQL as read before. Read only before, a reservation granted and
		// recorded meanwhile was counted twice, pending and in MySQL: the cache seemed behind and the
		// repair raised its issued count one above the truth for good (the fault suite, seed 237).
		before, err := j.cache.Campaign(ctx, id)
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
		// What the cache has issued that MySQL lacks, and MySQL's count, from one snapshot: a grant the
		// ledger writes between the scan and the count is then counted once. Counted twice it raised
		// issued above the truth for good (a repair never lowers it): stock left unsold, and a cache
		// that never again equals MySQL (found by the fault suite under Redis latency).
		missing := make([]string, len(scan.missing))
		for i, g := range scan.missing {
			missing[i] = g.ID
		}
		issued, recorded, err := j.store.IssuedAndRecorded(ctx, id, missing)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec.Issued = issued
		var stillMissing []domain.Claim
		for _, g := range scan.missing {
			if !recorded[g.ID] {
				stillMissing = append(stillMissing, g)
			}
		}
		scan.missing = stillMissing
		cc, err := j.cache.Campaign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c := rec.Campaign
		inFlight := int64(len(scan.missing)) + cc.Pending
		drift := domain.Reconcile(
			domain.DBView{Version: c.Version, Stock: c.Stock, Issued: rec.Issued},
			domain.CacheView{Present: cc.Present, Version: cc.Version, Stock: cc.Stock, Issued: cc.Issued, SealedFor: sealedFor(cc, now), GivingUp: cc.GivingUp},
			inFlight)
		if drift == domain.DriftIssuedAhead && before.Present &&
			!domain.GrantsLost(before.Issued-before.Pending, rec.Issued, int64(len(scan.missing))) {
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
			if applied, err := j.rebuildCampaign(ctx, rec, scan.missing, cc.Pending); err != nil {
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
