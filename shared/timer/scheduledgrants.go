// Scheduled grants: `mode: grant` campaigns handed out at starts_at.

package timer

import (
	"context"
	"errors"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// ScheduledGrants hands out `mode: grant` campaigns that are due: one unit to each eligible user,
// oldest registration first, until stock runs out. Redis decides each unit atomically with the same
// script as claims, and the claim id is derived from (user, campaign), so overlapping or repeated runs
// never grant a user twice nor more than stock.
func (j *Jobs) ScheduledGrants(ctx context.Context) (Report, error) {
	var r Report
	now := j.now()
	camps, err := j.store.LiveCampaigns(ctx, now, 0)
	if err != nil {
		return r, err
	}
	budget := j.cfg.GrantBudget
	var errs []error
	for _, rec := range camps {
		c := rec.Campaign
		if !domain.GrantDue(c, now) || budget <= 0 {
			continue
		}
		r.Campaigns++
		cc, err := j.cache.Campaign(ctx, c.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !cc.Present || cc.Version < c.Version {
			r.Note = "a due campaign is not in the cache yet; the next run grants it"
			continue
		}
		remaining := cc.Remaining
		var cursor domain.GrantCursor
	pages:
		for remaining > 0 && budget > 0 {
			cands, next, err := j.store.GrantCandidates(ctx, c.ID, cursor, 500)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if len(cands) == 0 {
				break
			}
			for _, userID := range domain.SelectGrantees(c, cands, remaining, now) {
				if budget <= 0 {
					break pages
				}
				out, err := j.cache.Claim(ctx, domain.ClaimInput{
					UserID: userID, CampaignID: c.ID, RequestID: domain.GrantRequestID(c.ID), Now: now, By: domain.ByGrant,
				})
				if err != nil {
					errs = append(errs, err)
					break pages
				}
				switch out.Code {
				case "":
					if out.Replayed {
						continue
					}
					budget--
					remaining--
					r.Granted++
					// As a claim: durable outside Redis before it counts, in MySQL when the broker fails.
					if err := j.publishGrant(ctx, out.Claim); err != nil {
						rctx, cancel := context.WithTimeout(ctx, grantRecordTimeout)
						_, err := j.store.RecordClaims(rctx, []domain.Claim{out.Claim})
						cancel()
						if err != nil {
							r.Failed++ // only in the Redis stream; grant-replay sends it while Redis keeps it
						}
					}
				case domain.CodeSoldOut, domain.CodeEnded, domain.CodePaused, domain.CodeNotClaimable:
					break pages
				}
			}
			cursor = next
		}
	}
	return r, errors.Join(errs...)
}
