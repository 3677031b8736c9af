package rediscache

// A campaign whose stock is split into buckets (domain.Campaign.Buckets = n > 1) keeps bucket b's keys
// under a hash tag of their own, {c:ID#b}, so that on a Redis Cluster one hot campaign's claims spread
// over the masters instead of all landing on the master of {c:ID}. Bucket 0 is {c:ID} itself, so a
// campaign of one bucket is laid out exactly as before.
//
// Each bucket holds the rule fields, and sells up to its allocation ('alloc'), a part of the stock. The
// protocol keeps one invariant: the allocations never add up to more than the stock (or than what was
// already issued, when the stock is lowered below it), so no two buckets can sell the same unit.
//
//   - A claim is decided in the user's home bucket (domain.HomeBucket), where the user's held count and
//     claim records live, so the per-user limit and request ids stay exact.
//   - A home bucket out of units borrows (borrow): a lender gives up units first and records the loan
//     (lend.lua), then the borrower's allocation grows once per loan id (receive.lua). A crash between
//     the two leaves units that no bucket sells: stock is undersold, never oversold, and the timer's
//     sweep completes the loan (sweepLoans). When no bucket has units to lend, the home bucket answers
//     sold_out for dryFor without asking again.
//   - A change of the campaign (a new stock, a pause) seals every bucket at what it has issued and opens
//     a new generation (seal_bucket.lua), then shares out what is left of the stock (open_bucket.lua,
//     domain.Reallocate). While sealed, a bucket answers claims 'unavailable' (503). A loan lent in an
//     older generation is dropped when it arrives, since the seal already counted its units as unsold.
//
// Keys of a bucket beyond the campaign's: bn:{c:ID#b}:loans-out (loan id → units|gen|borrower|ms) and
// :loans-in (loan id → applied|units|gen|lender|ms).

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// dryFor is how long a bucket that found nothing to borrow answers sold_out without asking the other
// buckets again. Units that come back meanwhile (a released reservation, a completed loan) wait that
// long to be sold from it: a short, bounded false sold_out that saves n−1 round trips per refusal once
// a hot campaign has sold out.
const dryFor = time.Second

// loanSettleAfter is how old a loan must be before the sweep completes it: older than any claim
// invocation (10 s), which completes its own loans at once.
const loanSettleAfter = 30 * time.Second

type bucketKeys struct {
	campaignKeys
	loansOut, loansIn string
}

func keysOfBucket(id string, b int) bucketKeys {
	tag := "c:" + id
	if b > 0 {
		tag += "#" + strconv.Itoa(b)
	}
	p := "bn:{" + tag + "}:"
	return bucketKeys{
		campaignKeys: campaignKeys{camp: p + "camp", held: p + "held", claims: p + "claims", grants: p + "grants", pending: p + "pending"},
		loansOut:     p + "loans-out", loansIn: p + "loans-in",
	}
}

// CampaignHashKey is the key of a campaign bucket's hash, for tools that must find its shard (the
// fault suite's injector).
func CampaignHashKey(id string, bucket int) string { return keysOfBucket(id, bucket).camp }

// bucketsOf is how many buckets campaign id is split into. It never changes after creation, so it is
// remembered once read; a campaign not in the cache is read as one bucket (its claims are answered
// from bucket 0, which then says campaign_not_found or unavailable) and not remembered.
func (c *Cache) bucketsOf(ctx context.Context, id string) (int, error) {
	if n, ok := c.buckets.Load(id); ok {
		return n.(int), nil
	}
	vals, err := c.rdb.HMGet(ctx, keysOfBucket(id, 0).camp, "version", "buckets").Result()
	if err != nil {
		return 0, classify(err)
	}
	if vals[0] == nil {
		return 1, nil
	}
	n := int(toInt(vals[1]))
	if n < 1 {
		n = 1
	}
	c.buckets.Store(id, n)
	return n, nil
}

// homeKeys are the keys of the bucket that decides userID's claims on campaign id.
func (c *Cache) homeKeys(ctx context.Context, id, userID string) (bucketKeys, int, error) {
	n, err := c.bucketsOf(ctx, id)
	if err != nil {
		return bucketKeys{}, 0, err
	}
	return keysOfBucket(id, domain.HomeBucket(userID, n)), n, nil
}

// newGen names one change's generation: the same for every delivery of one version (a redelivered
// change finds its own seals and carries on), a fresh one for every repair.
func newGen(mode string, version int64) string {
	if mode == "repair" {
		return "r" + strconv.FormatInt(version, 10) + "." + newAttempt()
	}
	return "v" + strconv.FormatInt(version, 10)
}

// applyBuckets is applyCampaign for a campaign of n > 1 buckets: seal every bucket, then share out the
// stock. floor is the issued count the cache must not fall below (as for one bucket).
//
// Every run of one change (a redelivery, two instances at once) shares out from the same figures:
// the buckets' seals, and the floor the first seal of bucket 0 stored for the generation. A change cut
// short leaves buckets sealed; its redelivery finishes it, and the reconciler repairs a campaign sealed
// longer than domain.SealGrace (a change whose retries ran out).
func (c *Cache) applyBuckets(ctx context.Context, camp domain.Campaign, fields []any, floor int64, mode string, expect int64) (ApplyResult, error) {
	n := camp.StockBuckets()
	if mode != "repair" {
		// Some buckets there and some not means evicted entries (or a first apply cut short): a bucket
		// created now would count nothing issued. Only the reconciler's rebuild, which restores the
		// users' holdings first, may write such a campaign.
		present, lost, err := c.bucketsPresent(ctx, camp.ID, n)
		switch {
		case err != nil:
			return ApplyResult{}, err
		case lost:
			return ApplyResult{CachedVersion: -2}, nil // a slot lost its data: the rebuild writes it
		case present != 0 && present != n:
			return ApplyResult{CachedVersion: -1}, nil
		case present == 0:
			mode = "create" // no bucket there: the seals may create them (and only then)
		}
	}
	gen := newGen(mode, camp.Version)
	run := newAttempt()
	now := time.Now().UnixMilli()
	sealed := make([]int64, n)
	opened := make([]bool, n)
	allOpen := true
	for b := 0; b < n; b++ {
		k := keysOfBucket(camp.ID, b)
		args := append([]any{camp.Version, gen, mode, expect, now, floor, run}, fields...)
		v, err := c.runDurable(ctx, c.scripts.seal, []string{k.camp, k.held, k.claims, k.grants, k.pending, c.markers.of(k.camp), k.loansOut, k.loansIn}, args...).Result()
		if err != nil {
			return ApplyResult{}, classify(err)
		}
		arr, ok := v.([]any)
		if !ok || len(arr) < 2 {
			return ApplyResult{}, shapeError("seal_bucket", v)
		}
		status, _ := arr[0].(int64)
		cached, _ := arr[1].(int64)
		if status == 0 {
			// A newer change got here first (it seals the buckets this one sealed again), the slot is
			// not ready, or the entry was evicted: as for one bucket, the caller learns the cached version.
			return ApplyResult{CachedVersion: cached}, nil
		}
		if len(arr) < 4 {
			return ApplyResult{}, shapeError("seal_bucket", v)
		}
		sealed[b], _ = arr[2].(int64)
		if b == 0 {
			floor, _ = arr[3].(int64) // the generation's floor, as its first run stored it
			// Only the run that created bucket 0 creates the others: another run's precheck may be older
			// than that creation, and a bucket it finds absent now was created, sold from and evicted.
			if by, _ := arr[len(arr)-1].(string); mode == "create" && (len(arr) < 5 || by != run) {
				mode = "fence"
			}
		}
		opened[b] = status == 2
		allOpen = allOpen && opened[b]
	}
	c.buckets.Store(camp.ID, n)
	if allOpen {
		return ApplyResult{CachedVersion: camp.Version}, nil // an earlier delivery of this change did it all
	}
	re := domain.Reallocate(camp.Stock, floor, sealed)
	over := 0
	if re.Over {
		over = 1
	}
	for b := 0; b < n; b++ {
		if opened[b] {
			continue
		}
		shortfall := int64(0)
		if b == 0 {
			shortfall = re.Shortfall
		}
		if err := c.runDurable(ctx, c.scripts.open, []string{keysOfBucket(camp.ID, b).camp}, gen, re.Share[b], shortfall, over).Err(); err != nil {
			return ApplyResult{}, classify(err)
		}
	}
	return ApplyResult{Applied: true, CachedVersion: camp.Version}, nil
}

// bucketsPresent counts the buckets of campaign id whose entry exists, and says whether the slot of
// any lost its data (its readiness marker is gone).
func (c *Cache) bucketsPresent(ctx context.Context, id string, n int) (present int, lost bool, err error) {
	pipe := c.rdb.Pipeline()
	entries := make([]*redis.IntCmd, n)
	markers := make([]*redis.IntCmd, n)
	for b := 0; b < n; b++ {
		k := keysOfBucket(id, b).camp
		entries[b] = pipe.Exists(ctx, k)
		markers[b] = pipe.Exists(ctx, c.markers.of(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, false, classify(err)
	}
	for b := 0; b < n; b++ {
		present += int(entries[b].Val())
		lost = lost || markers[b].Val() == 0
	}
	return present, lost, nil
}

// borrow moves units from other buckets into the dry bucket home, lender by lender in turn from the
// next, until one lends. It reports how many units arrived, or dropped when the loan arrived after a
// stock change had sealed the buckets (the claim is then decided again against the change); neither
// means no bucket had any, and the home bucket is marked sold out for dryFor.
func (c *Cache) borrow(ctx context.Context, id string, n, home int, now time.Time) (units int64, dropped bool, err error) {
	loan := newAttempt()
	to := keysOfBucket(id, home)
	for i := 1; i < n; i++ {
		from := (home + i) % n
		fk := keysOfBucket(id, from)
		v, err := c.runDurable(ctx, c.scripts.lend, []string{fk.camp, fk.loansOut, c.markers.of(fk.camp)},
			loan, home, now.UnixMilli(), n).Result()
		if err != nil {
			return 0, false, classify(err)
		}
		arr, ok := v.([]any)
		if !ok || len(arr) != 2 {
			return 0, false, shapeError("lend", v)
		}
		units, _ = arr[0].(int64)
		gen, _ := arr[1].(string)
		if units == 0 {
			continue
		}
		applied, err := c.runDurable(ctx, c.scripts.receive, []string{to.camp, to.loansIn}, loan, units, gen, from, now.UnixMilli()).Int()
		if err != nil {
			// Lent and not received: stranded until the sweep completes the loan; this claim fails.
			return 0, false, classify(err)
		}
		if applied == 1 {
			return units, false, nil
		}
		// Dropped (a stock change since), or waiting (a change is opening the buckets and this one is
		// still sealed: the sweep delivers the loan later): the claim is decided again.
		return 0, true, nil
	}
	err = c.scripts.markDry.Run(ctx, c.rdb, []string{to.camp}, now.Add(dryFor).UnixMilli()).Err()
	return 0, false, classify(err)
}

// sweepLoans completes the loans older than loanSettleAfter that a claim lent and never received (its
// invocation died between the two steps, or the borrower was sealed by a change then). The borrower
// keeps its record of each loan until the next generation (seal_bucket.lua clears both records), so
// sweeps that overlap, or a lender's record brought back by a failover, never apply a loan twice.
func (c *Cache) sweepLoans(ctx context.Context, id string, n int, now time.Time) error {
	cutoff := now.Add(-loanSettleAfter).UnixMilli()
	var errs []error
	for b := 0; b < n; b++ {
		k := keysOfBucket(id, b)
		out, err := c.rdb.HGetAll(ctx, k.loansOut).Result()
		if err != nil {
			return classify(err)
		}
		for loan, rec := range out {
			parts := strings.Split(rec, "|") // units|gen|borrower|ms
			if len(parts) != 4 {
				continue
			}
			if at, _ := strconv.ParseInt(parts[3], 10, 64); at > cutoff {
				continue
			}
			to, err := strconv.Atoi(parts[2])
			if err != nil || to < 0 || to >= n {
				continue
			}
			tk := keysOfBucket(id, to)
			verdict, err := c.runDurable(ctx, c.scripts.receive, []string{tk.camp, tk.loansIn}, loan, parts[0], parts[1], b, now.UnixMilli()).Int()
			if err != nil {
				errs = append(errs, classify(err))
				continue
			}
			if verdict == 2 {
				continue // the borrower is still sealed by a change: the next sweep
			}
			// The borrower's record now answers any late receipt of this loan: the lender's can go.
			if err := c.rdb.HDel(ctx, k.loansOut, loan).Err(); err != nil {
				errs = append(errs, classify(err))
			}
		}
	}
	return errors.Join(errs...)
}

// campaignOfBuckets is Campaign for a campaign of n > 1 buckets: one view summed over the buckets.
// Present only if every bucket is; the version is the lowest (a change half-way through reads as not
// yet applied); remaining is what the open buckets may still sell.
func (c *Cache) campaignOfBuckets(ctx context.Context, id string, n int) (CachedCampaign, error) {
	pipe := c.rdb.Pipeline()
	hs := make([]*redis.SliceCmd, n)
	ps := make([]*redis.IntCmd, n)
	for b := 0; b < n; b++ {
		k := keysOfBucket(id, b)
		hs[b] = pipe.HMGet(ctx, k.camp, "version", "stock", "issued", "remaining", "sealed", "sealed_ms", "over")
		ps[b] = pipe.ZCard(ctx, k.pending)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return CachedCampaign{}, classify(err)
	}
	view := CachedCampaign{Present: true}
	for b := 0; b < n; b++ {
		vals := hs[b].Val()
		if vals[0] == nil {
			// Absent if one bucket is, but with every bucket's reservations (the rebuild counts them).
			var pending int64
			for _, p := range ps {
				pending += p.Val()
			}
			return CachedCampaign{Pending: pending}, nil
		}
		if v := toInt(vals[0]); b == 0 || v < view.Version {
			view.Version, view.Stock = v, toInt(vals[1])
		}
		view.Issued += toInt(vals[2])
		if toInt(vals[4]) != 1 {
			view.Remaining += toInt(vals[3])
		} else if at := time.UnixMilli(toInt(vals[5])); view.SealedSince.IsZero() || at.Before(view.SealedSince) {
			view.SealedSince = at
		}
		view.Pending += ps[b].Val()
		view.GivingUp = view.GivingUp || toInt(vals[6]) == 1
	}
	return view, nil
}

// streamOf splits a stream position of ReadGrants: "<id>" in bucket 0, "<id>@<b>" in bucket b.
func streamOf(pos string) (id string, bucket int) {
	id, b, ok := strings.Cut(pos, "@")
	if !ok {
		return pos, 0
	}
	n, _ := strconv.Atoi(b)
	return id, n
}

func streamPos(id string, bucket int) string {
	if bucket == 0 {
		return id
	}
	return id + "@" + strconv.Itoa(bucket)
}
