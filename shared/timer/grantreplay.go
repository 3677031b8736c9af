// The grant replay: grants in a campaign's Redis stream that MySQL lacks, and points claims left
// half-done.

package timer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// streamScan is what the grant stream of one campaign holds beyond MySQL.
type streamScan struct {
	missing []domain.Claim // granted in Redis, not in MySQL
	// trimUpTo is, per stream (a campaign split into buckets has one per bucket), the last position of
	// the prefix MySQL already has.
	trimUpTo map[int]string
	trimmed  int
}

func (j *Jobs) scanGrants(ctx context.Context, campaignID string) (streamScan, error) {
	s := streamScan{trimUpTo: map[int]string{}}
	after := "0"
	broken := map[int]bool{} // the streams that had an entry MySQL lacks: their prefix ended there
	for {
		batch, err := j.cache.ReadGrants(ctx, campaignID, after, 500)
		if err != nil {
			return s, err
		}
		if len(batch) == 0 {
			return s, nil
		}
		ids := make([]string, len(batch))
		for i, g := range batch {
			ids[i] = g.Claim.ID
		}
		have, err := j.store.ExistingClaims(ctx, ids)
		if err != nil {
			return s, err
		}
		for _, g := range batch {
			if have[g.Claim.ID] {
				if !broken[g.Stream] {
					s.trimUpTo[g.Stream] = g.StreamID
					s.trimmed++
				}
				continue
			}
			broken[g.Stream] = true
			s.missing = append(s.missing, g.Claim)
		}
		after = batch[len(batch)-1].StreamID
	}
}

// GrantReplay sends the ledger every grant the Redis stream has and MySQL lacks (a claim whose publish
// failed), trims what MySQL has, and resolves points claims left half-done by a crash.
func (j *Jobs) GrantReplay(ctx context.Context) (Report, error) {
	var r Report
	now := j.now()
	camps, err := j.store.LiveCampaigns(ctx, now, j.cfg.ReconcileGrace)
	if err != nil {
		return r, err
	}
	r.Campaigns = len(camps)
	var errs []error
	for _, rec := range camps {
		id := rec.Campaign.ID
		sw, err := j.cache.SweepPending(ctx, id, j.cfg.PendingTimeout, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", id, err))
		}
		r.Confirmed += sw.Confirmed
		r.Released += sw.Released
		scanned := time.Now()
		scan, err := j.scanGrants(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("scan %s: %w", id, err))
			continue
		}
		for _, c := range scan.missing {
			if now.Sub(c.GrantedAt) < j.cfg.ReplayAge {
				continue
			}
			if time.Since(scanned) > replayWindow {
				r.Note = "replay window spent; the next run sends the rest"
				break
			}
			if err := j.publishGrant(ctx, c); err != nil {
				r.Failed++
				errs = append(errs, err)
				continue
			}
			r.Replayed++
		}
		trimFailed := false
		for _, upTo := range scan.trimUpTo {
			if err := j.cache.TrimGrants(ctx, id, upTo); err != nil {
				errs = append(errs, fmt.Errorf("trim %s: %w", id, err))
				trimFailed = true
			}
		}
		if !trimFailed {
			r.Trimmed += scan.trimmed
		}
	}
	return r, errors.Join(errs...)
}
