// Package claimload is what the claim benchmarks share: the two bench campaigns written straight
// into a cache, and a closed-loop load runner (C workers, each doing whole calls back to back, bounded
// by a count or a duration) that keeps every call's latency and outcome.
package claimload

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// The campaigns Reset writes: one that never runs out and one with no stock.
const (
	GrantCampaign   = "bench-grant"
	SoldOutCampaign = "bench-soldout"
)

// Campaign is a claim campaign open for a day around now with the given stock and the highest
// per-user limit, so that the same user may claim again and again.
func Campaign(id string, stock int64, now time.Time) domain.Campaign {
	return domain.Campaign{
		ID: id, Name: "bench", Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim,
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour), Stock: stock,
		PerUserLimit: domain.MaxPerUserLimit, Status: domain.StatusActive, Version: 1,
	}
}

// Reset marks the cache ready (as a fresh deployment's first rebuild leaves it) and writes
// GrantCampaign (stock domain.MaxStock) and SoldOutCampaign (stock 0). The caller empties the
// database first.
func Reset(ctx context.Context, cache *rediscache.Cache) error {
	if err := cache.MarkReady(ctx); err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, camp := range []domain.Campaign{Campaign(GrantCampaign, domain.MaxStock, now), Campaign(SoldOutCampaign, 0, now)} {
		if err := camp.Validate(); err != nil {
			return fmt.Errorf("campaign %s: %w", camp.ID, err)
		}
		if res, err := cache.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
			return fmt.Errorf("apply campaign %s: %+v %v", camp.ID, res, err)
		}
	}
	return nil
}

// Result is one run: every call's outcome ("" is not used: a call reports its own code, e.g.
// "granted" or "sold_out") and latency.
type Result struct {
	Calls    int
	Elapsed  time.Duration
	Lat      []time.Duration // sorted
	Codes    map[string]int
	Errs     int
	FirstErr error
}

// PerSec is calls per second with the given outcome, or all calls for "".
func (r Result) PerSec(code string) float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	n := r.Calls
	if code != "" {
		n = r.Codes[code]
	}
	return float64(n) / r.Elapsed.Seconds()
}

// Percentile of the latencies, p in [0,1].
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.Lat[min(len(r.Lat)-1, int(p*float64(len(r.Lat))))]
}

// Run calls do from c workers until n calls have started (n > 0) or d has passed since the start
// (d > 0), whichever comes first; at least one bound must be set. do gets the call's index (unique
// across workers) and returns its outcome code.
func Run(ctx context.Context, c, n int, d time.Duration, do func(ctx context.Context, i int) (string, error)) Result {
	if n <= 0 && d <= 0 {
		panic("claimload.Run: no bound")
	}
	type part struct {
		lat   []time.Duration
		codes map[string]int
		errs  int
		first error
	}
	parts := make([]part, c)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	var end time.Time
	if d > 0 {
		end = start.Add(d)
	}
	for g := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[g]
			p.codes = map[string]int{}
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if n > 0 && i >= n {
					return
				}
				t0 := time.Now()
				if !end.IsZero() && !t0.Before(end) {
					return
				}
				code, err := do(ctx, i)
				p.lat = append(p.lat, time.Since(t0))
				if err != nil {
					p.errs++
					if p.first == nil {
						p.first = err
					}
					continue
				}
				p.codes[code]++
			}
		}()
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start), Codes: map[string]int{}}
	for _, p := range parts {
		res.Lat = append(res.Lat, p.lat...)
		for k, v := range p.codes {
			res.Codes[k] += v
		}
		res.Errs += p.errs
		if res.FirstErr == nil {
			res.FirstErr = p.first
		}
	}
	res.Calls = len(res.Lat)
	slices.Sort(res.Lat)
	return res
}

// Claim is one library claim through cache.Claim, with its outcome as a code: "granted" or the
// refusal's code.
func Claim(ctx context.Context, cache *rediscache.Cache, in rediscache.ClaimInput) (string, error) {
	out, err := cache.Claim(ctx, in)
	switch {
	case err != nil:
		return "", err
	case out.Code == "":
		return "granted", nil
	default:
		return string(out.Code), nil
	}
}
