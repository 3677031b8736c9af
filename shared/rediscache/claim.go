package rediscache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

// ClaimInput is domain.ClaimInput, the services' port type.
type ClaimInput = domain.ClaimInput

func newAttempt() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ClaimOutcome is domain.ClaimOutcome, the services' port type.
type ClaimOutcome = domain.ClaimOutcome

// beginResult is what the user slot tells the campaign step.
type beginResult struct {
	cacheLost   bool // the user's slot lost its data: nothing was bound
	rateLimited bool
	retryAfter  time.Duration
	bound       string    // the campaign the request id is bound to
	binding     string    // the binding as stored, for compare-and-set
	boundAt     time.Time // when it was bound (zero for bindings older than the timestamp)
	made        bool      // this call bound the request (begin, or a rebind), rather than found it bound
	profile     domain.Profile
	balance     int64
}

// RebindAfter is how old a request's binding to another campaign must be before it may move: longer
// than any claim can run (a claim invocation's timeout is 10 s), so a binding that young may belong to
// a claim still in progress, and moving it would let one request id be granted in two campaigns.
const RebindAfter = 30 * time.Second

func parseBinding(b string) (string, int64) {
	id, at, ok := strings.Cut(b, "|")
	if !ok {
		return b, 0
	}
	ms, _ := strconv.ParseInt(at, 10, 64)
	return id, ms
}

// begin is step 1 of a claim, in the user's slot. Both slots a claim touches must hold their data:
// each step's script checks its own slot's readiness marker (the marker of a slot lives in it).
func (c *Cache) begin(ctx context.Context, in ClaimInput) (beginResult, error) {
	uk := keysOfUser(in.UserID)
	v, err := c.scripts.begin.Run(ctx, c.rdb, []string{uk.user, uk.req, uk.rate, c.markers.of(uk.user)},
		in.RequestID, in.CampaignID, in.RateLimit, in.Now.UnixMilli()).Result()
	if err != nil {
		return beginResult{}, classify(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 8 {
		return beginResult{}, shapeError("claim_begin", v)
	}
	status, _ := arr[0].(string)
	binding, _ := arr[1].(string)
	bound, boundMS := parseBinding(binding)
	known, _ := arr[2].(int64)
	regMS, _ := arr[3].(int64)
	member, _ := arr[4].(int64)
	balance, _ := arr[5].(int64)
	retryMS, _ := arr[6].(int64)
	made, _ := arr[7].(int64)
	return beginResult{
		made:        made == 1,
		cacheLost:   status == "cache_lost",
		rateLimited: status == "rate_limited",
		retryAfter:  time.Duration(retryMS) * time.Millisecond,
		bound:       bound,
		binding:     binding,
		boundAt:     time.UnixMilli(boundMS),
		profile:     domain.Profile{Known: known == 1, RegisteredAt: time.UnixMilli(regMS).UTC(), Member: member == 1},
		balance:     balance,
	}, nil
}

// Claim decides one request (see the package comment for the saga). Refusals are outcomes, not errors;
// an error means Redis could not be asked, and then nothing was issued that the caller is told about:
// a reservation left behind by a failure half-way is resolved by a retry of the same request or by
// SweepPending.
func (c *Cache) Claim(ctx context.Context, in ClaimInput) (ClaimOutcome, error) {
	if in.By == domain.ByGrant {
		in.RateLimit = 0
	}
	claimID := domain.ClaimID(in.UserID, in.RequestID)
	ck, n, err := c.homeKeys(ctx, in.CampaignID, in.UserID)
	if err != nil {
		return ClaimOutcome{}, err
	}
	if _, refusing := c.refusing.Load(in.CampaignID); refusing && in.By == domain.ByClaim {
		code, campaignRefuses := c.refuseEarly(ctx, in, claimID, ck)
		if code != "" {
			return ClaimOutcome{Code: code}, nil
		}
		if !campaignRefuses {
			c.refusing.Delete(in.CampaignID) // granting again (stock raised, resumed): the full path
		}
	}
	if in.Attempt == "" {
		in.Attempt = newAttempt() // only a write needs it: an early refusal writes nothing
	}
	b, err := c.begin(ctx, in)
	if err != nil {
		return ClaimOutcome{}, err
	}
	if b.cacheLost {
		return ClaimOutcome{Code: domain.CodeUnavailable, CacheLost: true}, nil
	}
	if b.rateLimited {
		return ClaimOutcome{Code: domain.CodeRateLimited, RetryAfter: b.retryAfter}, nil
	}
	if b.bound != in.CampaignID {
		// The request id was used for another campaign. If that campaign recorded it, that is the answer,
		// whatever is asked now; if it never did (a crash before step 2), the binding moves here.
		boundKeys, _, err := c.homeKeys(ctx, b.bound, in.UserID)
		if err != nil {
			return ClaimOutcome{}, err
		}
		pipe := c.rdb.Pipeline()
		// That campaign's slot must hold its data, or a record lost with it would look never made.
		boundReady := pipe.Exists(ctx, c.markers.of(boundKeys.claims))
		rec := pipe.HGet(ctx, boundKeys.claims, claimID)
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return ClaimOutcome{}, classify(err)
		}
		if boundReady.Val() != 1 {
			return ClaimOutcome{Code: domain.CodeUnavailable, CacheLost: true}, nil
		}
		raw, err := rec.Result()
		switch {
		case err == nil:
			return c.finish(ctx, in, claimID, raw, true, b)
		case err != redis.Nil:
			return ClaimOutcome{}, classify(err)
		}
		if in.Now.Sub(b.boundAt) < RebindAfter {
			// The same request id is being claimed from another campaign right now: nothing was issued
			// for this call; a retry gets that claim's answer or, once it is stale, moves here.
			return ClaimOutcome{Code: domain.CodeUnavailable}, nil
		}
		moved := in.CampaignID + "|" + strconv.FormatInt(in.Now.UnixMilli(), 10)
		ok, err := c.scripts.rebind.Run(ctx, c.rdb, []string{keysOfUser(in.UserID).req}, in.RequestID, b.binding, moved).Int()
		if err != nil {
			return ClaimOutcome{}, classify(err)
		}
		if ok == 0 {
			return ClaimOutcome{Code: domain.CodeUnavailable}, nil
		}
		b.binding, b.made = moved, true
	}
	return c.decide(ctx, in, claimID, b, ck, n)
}

// refuseEarly answers, with reads only, a claim that its campaign refuses whoever asks (paused, outside
// its window, sold out, or the user at their limit): at 10:00 nearly every request after the first
// minute is one, and the full path would bind the request, count it against the rate limit and unbind
// it again, three writes that an fsync-always Redis makes each pay for. The campaign's slot is read
// first (claim_refuse.lua: no record of this claim id, and a refusal), then the user's: the request is
// bound to no campaign and the slot holds its data. A request bound nowhere then has no claim
// anywhere, and had none when the campaign refused (a binding to a campaign that recorded the claim is
// never removed), so the refusal is the answer. Anything else, or any error, goes the full way, which
// answers it the same as before. Early refusals are not rate limited: they cost two reads.
// It runs only for campaigns this instance last saw refuse (c.refusing), so a claim on a campaign that
// grants keeps its two round trips; campaignRefuses says whether the campaign's slot refused at all.
func (c *Cache) refuseEarly(ctx context.Context, in ClaimInput, claimID string, ck bucketKeys) (code domain.Code, campaignRefuses bool) {
	// Both reads go in one pipeline: one round trip (on a cluster, one to each slot's master at once).
	uk := keysOfUser(in.UserID)
	keys := []string{ck.camp, ck.held, ck.claims, c.markers.of(ck.camp)}
	args := []any{claimID, in.UserID, in.Now.UnixMilli(), "claim"}
	pipe := c.rdb.Pipeline()
	refusal := c.scripts.refuse.EvalSha(ctx, pipe, keys, args...)
	userReady := pipe.Exists(ctx, c.markers.of(uk.user))
	bound := pipe.HExists(ctx, uk.req, in.RequestID)
	_, err := pipe.Exec(ctx)
	if err != nil && redis.HasErrorPrefix(refusal.Err(), "NOSCRIPT") {
		refusal = c.scripts.refuse.Eval(ctx, c.rdb, keys, args...) // loaded now for the next ones
		err = errors.Join(refusal.Err(), userReady.Err(), bound.Err())
	}
	if err != nil {
		return "", true
	}
	r, _ := refusal.Text()
	if r == "" {
		return "", false
	}
	if userReady.Val() != 1 || bound.Val() {
		return "", true
	}
	return domain.Code(r), true
}

// earlyRefusals are the refusals claim_refuse.lua gives; one of them from the full path marks the
// campaign as refusing, so that its next claims try refuseEarly first.
var earlyRefusals = map[domain.Code]bool{
	domain.CodeNotClaimable: true, domain.CodePaused: true, domain.CodeNotStarted: true, domain.CodeEnded: true,
	domain.CodeLimitReached: true, domain.CodeSoldOut: true,
}

// maxBorrows bounds the loans one claim may take before it answers: each one brings units, so a claim
// that still finds its bucket dry after that many lost them to the claims beside it.
const maxBorrows = 3

func (c *Cache) decide(ctx context.Context, in ClaimInput, claimID string, b beginResult, ck bucketKeys, n int) (ClaimOutcome, error) {
	issuance := "claim"
	if in.By == domain.ByGrant {
		issuance = "grant"
	}
	known, member := 0, 0
	if b.profile.Known {
		known = 1
	}
	if b.profile.Member {
		member = 1
	}
	var arr []any
	var status string
	resent := false
	for borrows := 0; ; borrows++ {
		sent := time.Now()
		v, err := c.runDurable(ctx, c.scripts.claim, []string{ck.camp, ck.held, ck.claims, ck.grants, ck.pending, c.markers.of(ck.camp)},
			in.UserID, claimID, in.RequestID, in.Now.UnixMilli(), issuance, known, b.profile.RegisteredAt.UnixMilli(), member, in.Attempt, b.balance).Result()
		if err != nil {
			return ClaimOutcome{}, classify(err)
		}
		resent = resent || c.mayHaveResent(time.Since(sent))
		var ok bool
		arr, ok = v.([]any)
		if !ok || len(arr) == 0 {
			return ClaimOutcome{}, shapeError("claim", v)
		}
		status, _ = arr[0].(string)
		if status != "dry" {
			break
		}
		if borrows == maxBorrows {
			status = string(domain.CodeUnavailable)
			break
		}
		units, dropped, err := c.borrow(ctx, in.CampaignID, n, domain.HomeBucket(in.UserID, n), in.Now)
		if err != nil {
			if !resent {
				c.unbindIfSettled(ctx, in, b)
			}
			return ClaimOutcome{}, err
		}
		if units == 0 && !dropped {
			status = string(domain.CodeSoldOut)
			break
		}
	}
	switch {
	case status == "ok" || status == "replay":
		raw, _ := arr[1].(string)
		return c.finish(ctx, in, claimID, raw, status == "replay", b)
	case resent && (status == "campaign_not_found" || status == "cache_lost" || domain.Code(status).HTTPStatus() != 500):
		return ClaimOutcome{}, undecided("claim", status)
	}
	switch status {
	case "campaign_not_found":
		c.unbindIfSettled(ctx, in, b)
		return ClaimOutcome{Code: domain.CodeCampaignNotFound}, nil
	case "cache_lost":
		// The binding stays: the lost slot may have recorded this claim, and the rebuild restores its
		// binding only where the request id is not bound elsewhere by then.
		return ClaimOutcome{Code: domain.CodeUnavailable, CacheLost: true}, nil
	default:
		code := domain.Code(status)
		if code.HTTPStatus() == 500 {
			return ClaimOutcome{}, shapeError("claim", arr)
		}
		c.unbindIfSettled(ctx, in, b)
		if earlyRefusals[code] && in.By == domain.ByClaim {
			c.refusing.Store(in.CampaignID, struct{}{})
		}
		return ClaimOutcome{Code: code}, nil
	}
}

// undecided is a claim script's refusal that may not be the answer: the call took long enough for the
// client to have sent the script twice (a read timeout, then a re-send), so the refusal may be the
// re-send's, while the first send is still on its way and may yet be granted when it arrives. The
// request keeps its binding, so that a late grant cannot be joined by another under the same request
// id in another campaign (unbindIfSettled); the caller answers that the outcome is unknown, and a
// retry with the same request id learns it. (A refused debit needs no such answer: it is voided
// before the release, so a late debit finds it void.)
func undecided(script, answer string) error {
	return fault.Retryable(fmt.Errorf("rediscache: %s answered %s after a possible re-send; an earlier send may still be applied", script, answer))
}

// finish completes a claim recorded in the campaign's slot: a granted one is the answer; a pending one
// (a points cost) needs its debit and then confirmation, or release when the debit is refused.
// b is the request's binding as this call found or made it (unbound on a refusal, see unbindIfSettled).
func (c *Cache) finish(ctx context.Context, in ClaimInput, claimID, raw string, replayed bool, b beginResult) (ClaimOutcome, error) {
	stored, claim, err := decodeClaim(raw)
	if err != nil {
		return ClaimOutcome{}, err
	}
	if stored.Attempt != "" && stored.Attempt == in.Attempt {
		replayed = false // recorded by this very call: a re-sent command found its own claim
	}
	if stored.State == "granted" {
		return ClaimOutcome{Claim: claim, Replayed: replayed}, nil
	}
	uk := keysOfUser(claim.UserID)
	verdict, err := c.runDurable(ctx, c.scripts.debit, []string{uk.user, uk.debits}, claimID, claim.CostPoints, stored.Reservation).Text()
	if err != nil {
		return ClaimOutcome{}, classify(err)
	}
	if verdict == "insufficient_points" {
		// A debit of this reservation sent earlier (this call's own, re-sent after a read timeout, or
		// an earlier call's) may still be on its way, and would debit after the release once credits
		// came in: void the reservation's debit first, as the sweeper does. If one landed meanwhile,
		// the claim is paid for.
		voided, err := c.runDurable(ctx, c.scripts.voidDebit, []string{uk.debits}, claimID, stored.Reservation).Text()
		if err != nil {
			return ClaimOutcome{}, classify(err)
		}
		if voided == "debited" {
			return c.confirm(ctx, claim, replayed)
		}
	}
	switch verdict {
	case "ok":
		return c.confirm(ctx, claim, replayed)
	case "insufficient_points", "void":
		if err := c.release(ctx, claim, stored.Reservation); err != nil {
			return ClaimOutcome{}, err
		}
		c.unbindIfSettled(ctx, in, b)
		if verdict == "void" {
			// The sweeper gave up on this reservation; the request may simply be retried.
			return ClaimOutcome{Code: domain.CodeUnavailable}, nil
		}
		return ClaimOutcome{Code: domain.CodeInsufficientPoints}, nil
	}
	return ClaimOutcome{}, shapeError("debit", verdict)
}

func (c *Cache) confirm(ctx context.Context, claim domain.Claim, replayed bool) (ClaimOutcome, error) {
	ck, _, err := c.homeKeys(ctx, claim.CampaignID, claim.UserID)
	if err != nil {
		return ClaimOutcome{}, err
	}
	v, err := c.runDurable(ctx, c.scripts.confirm, []string{ck.claims, ck.grants, ck.pending}, claim.ID).Result()
	if err != nil {
		return ClaimOutcome{}, classify(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return ClaimOutcome{}, shapeError("confirm", v)
	}
	if s, _ := arr[0].(string); s != "ok" {
		return ClaimOutcome{}, fault.Permanent(fmt.Errorf("rediscache: confirm %s: claim record missing", claim.ID))
	}
	raw, _ := arr[1].(string)
	_, granted, err := decodeClaim(raw)
	if err != nil {
		return ClaimOutcome{}, err
	}
	return ClaimOutcome{Claim: granted, Replayed: replayed}, nil
}

func (c *Cache) release(ctx context.Context, claim domain.Claim, reservation int64) error {
	ck, _, err := c.homeKeys(ctx, claim.CampaignID, claim.UserID)
	if err != nil {
		return err
	}
	return classify(c.scripts.release.Run(ctx, c.rdb, []string{ck.camp, ck.held, ck.claims, ck.pending}, claim.ID, reservation).Err())
}

// unbindIfSettled forgets a refused request's binding, so that its id may be used on another campaign
// at once, only when no earlier call of the request can still be deciding it: the binding is this
// call's own (made by its begin or rebind), or as old as RebindAfter. A binding an earlier call made is
// younger when that call ended without an answer (a timeout, a 503) and its claim script may still
// be on its way to Redis; if that one is then granted, the binding makes it the request's only claim.
// The binding left in place costs the request id a 503 on another campaign until RebindAfter.
func (c *Cache) unbindIfSettled(ctx context.Context, in ClaimInput, b beginResult) {
	if b.made || in.Now.Sub(b.boundAt) >= RebindAfter {
		c.unbind(ctx, in.UserID, in.RequestID, b.binding)
	}
}

// unbind is best effort: a binding left behind only means a retry is answered from the campaign's
// record, or re-decided there when none exists. match is the binding as the caller saw it
// ("campaign|bound_ms"), so a re-sent unbind cannot remove the fresh binding of a retry that came in
// between.
func (c *Cache) unbind(ctx context.Context, userID, requestID, match string) {
	_ = c.scripts.unbind.Run(ctx, c.rdb, []string{keysOfUser(userID).req}, requestID, match).Err()
}

// SweepResult is domain.SweepResult, the services' port type.
type SweepResult = domain.SweepResult

// SweepPending resolves points claims reserved longer than olderThan ago and never finished (the
// claim function died between the reservation and the debit, or between the debit and confirmation).
// The debit is voided first if it never happened, so a late debit cannot follow a release.
// On a campaign split into buckets it sweeps each bucket, then completes loans cut short (sweepLoans).
func (c *Cache) SweepPending(ctx context.Context, campaignID string, olderThan time.Duration, now time.Time) (SweepResult, error) {
	n, err := c.bucketsOf(ctx, campaignID)
	if err != nil {
		return SweepResult{}, err
	}
	var res SweepResult
	for b := 0; b < n; b++ {
		r, err := c.sweepBucket(ctx, keysOfBucket(campaignID, b), olderThan, now)
		res.Confirmed += r.Confirmed
		res.Released += r.Released
		if err != nil {
			return res, err
		}
	}
	if n > 1 {
		return res, c.sweepLoans(ctx, campaignID, n, now)
	}
	return res, nil
}

func (c *Cache) sweepBucket(ctx context.Context, ck bucketKeys, olderThan time.Duration, now time.Time) (SweepResult, error) {
	var res SweepResult
	ids, err := c.rdb.ZRangeByScore(ctx, ck.pending, &redis.ZRangeBy{Min: "-inf", Max: fmt.Sprint(now.Add(-olderThan).UnixMilli())}).Result()
	if err != nil {
		return res, classify(err)
	}
	for _, id := range ids {
		raw, err := c.rdb.HGet(ctx, ck.claims, id).Result()
		if err == redis.Nil {
			_ = c.rdb.ZRem(ctx, ck.pending, id).Err()
			continue
		}
		if err != nil {
			return res, classify(err)
		}
		stored, claim, err := decodeClaim(raw)
		if err != nil {
			return res, err
		}
		if stored.State != "pending" {
			_ = c.rdb.ZRem(ctx, ck.pending, id).Err()
			continue
		}
		verdict, err := c.scripts.voidDebit.Run(ctx, c.rdb, []string{keysOfUser(claim.UserID).debits}, id, stored.Reservation).Text()
		if err != nil {
			return res, classify(err)
		}
		if verdict == "debited" {
			if _, err := c.confirm(ctx, claim, false); err != nil {
				return res, err
			}
			res.Confirmed++
			continue
		}
		if err := c.release(ctx, claim, stored.Reservation); err != nil {
			return res, err
		}
		// The binding stays: a retry that found it may have reserved again since the release, and
		// needs it. It is as old as the reservation, so another campaign may already rebind it.
		res.Released++
	}
	return res, nil
}

// Reservation is domain.Reservation, the services' port type.
type Reservation = domain.Reservation

// Reservations lists the units the campaign's buckets hold reserved for points claims awaiting their
// debit, whether or not its entry is there (an evicted entry's reservations outlive it).
func (c *Cache) Reservations(ctx context.Context, campaignID string) ([]Reservation, error) {
	n, err := c.bucketsOf(ctx, campaignID)
	if err != nil {
		return nil, err
	}
	pipe := c.rdb.Pipeline()
	ids := make([]*redis.StringSliceCmd, n)
	for b := 0; b < n; b++ {
		ids[b] = pipe.ZRange(ctx, keysOfBucket(campaignID, b).pending, 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, classify(err)
	}
	var out []Reservation
	for b := range ids {
		for _, id := range ids[b].Val() {
			out = append(out, Reservation{ClaimID: id, Bucket: b})
		}
	}
	return out, nil
}

// Kept returns those of rs whose claim is still recorded in its bucket, reserved or granted: a
// released reservation's record is gone.
func (c *Cache) Kept(ctx context.Context, campaignID string, rs []Reservation) ([]Reservation, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	pipe := c.rdb.Pipeline()
	there := make([]*redis.BoolCmd, len(rs))
	for i, r := range rs {
		there[i] = pipe.HExists(ctx, keysOfBucket(campaignID, r.Bucket).claims, r.ClaimID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, classify(err)
	}
	var kept []Reservation
	for i, r := range rs {
		if there[i].Val() {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// StreamGrant is domain.StreamGrant, the services' port type.
type StreamGrant = domain.StreamGrant

// ReadGrants returns up to count stream entries after afterStreamID ("0" or "" for the start). A
// campaign split into buckets has a stream per bucket, read one after another; its positions name the
// bucket ("<id>@<b>"), and StreamGrant.Stream tells the streams apart.
func (c *Cache) ReadGrants(ctx context.Context, campaignID, afterStreamID string, count int64) ([]StreamGrant, error) {
	n, err := c.bucketsOf(ctx, campaignID)
	if err != nil {
		return nil, err
	}
	after, bucket := streamOf(afterStreamID)
	var out []StreamGrant
	for ; bucket < n && int64(len(out)) < count; bucket, after = bucket+1, "" {
		start := "-"
		if after != "" && after != "0" {
			start = "(" + after
		}
		msgs, err := c.rdb.XRangeN(ctx, keysOfBucket(campaignID, bucket).grants, start, "+", count-int64(len(out))).Result()
		if err != nil {
			return nil, classify(err)
		}
		for _, m := range msgs {
			raw, _ := m.Values["claim"].(string)
			_, claim, err := decodeClaim(raw)
			if err != nil {
				return nil, err
			}
			out = append(out, StreamGrant{StreamID: streamPos(m.ID, bucket), Stream: bucket, Claim: claim})
		}
	}
	if out == nil {
		out = []StreamGrant{}
	}
	return out, nil
}

// TrimGrants removes stream entries up to and including upToStreamID, in its bucket's stream only:
// the ledger has them.
func (c *Cache) TrimGrants(ctx context.Context, campaignID, upToStreamID string) error {
	upToStreamID, bucket := streamOf(upToStreamID)
	k := keysOfBucket(campaignID, bucket).grants
	pipe := c.rdb.Pipeline()
	pipe.XTrimMinID(ctx, k, upToStreamID) // keeps ids ≥ upTo …
	pipe.XDel(ctx, k, upToStreamID)       // … so drop upTo itself too
	_, err := pipe.Exec(ctx)
	return classify(err)
}

// restoreBindings binds each claim's request to its campaign where the request is bound to nothing,
// as bound long ago (0 ms), which the claim path treats as any binding whose campaign recorded the
// claim: the answer to the request.
func (c *Cache) restoreBindings(ctx context.Context, campaignID string, claims []domain.Claim) error {
	const chunk = 500
	for start := 0; start < len(claims); start += chunk {
		pipe := c.rdb.Pipeline()
		for _, cl := range claims[start:min(start+chunk, len(claims))] {
			pipe.HSetNX(ctx, keysOfUser(cl.UserID).req, cl.RequestID, campaignID+"|0")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return classify(err)
		}
	}
	return nil
}

// RestoreClaims puts back claim records and held counts from MySQL after a cache loss, and each
// claim's request binding in its user's slot. Without the binding a request id granted here and sent
// again to another campaign would be decided there afresh: a second claim under the same claim id,
// which MySQL can never record, answered 201; and an early refusal (refuseEarly) would answer it where
// the original claim is the answer.
// On a campaign split into buckets each claim goes to its user's home bucket.
func (c *Cache) RestoreClaims(ctx context.Context, camp domain.Campaign, claims []domain.Claim) error {
	campaignID, n := camp.ID, camp.StockBuckets()
	if err := c.restoreBindings(ctx, campaignID, claims); err != nil {
		return err
	}
	byBucket := map[int][]domain.Claim{}
	for _, cl := range claims {
		b := domain.HomeBucket(cl.UserID, n)
		byBucket[b] = append(byBucket[b], cl)
	}
	if len(claims) == 0 {
		byBucket[0] = nil
	}
	for b, cls := range byBucket {
		if err := c.restoreBucket(ctx, keysOfBucket(campaignID, b), cls); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cache) restoreBucket(ctx context.Context, ck bucketKeys, claims []domain.Claim) error {
	const chunk = 500
	held := map[string]int64{}
	for _, cl := range claims {
		held[cl.UserID]++
	}
	users := make([]string, 0, len(held))
	for u := range held {
		users = append(users, u)
	}
	for start := 0; start < len(users) || start == 0; start += chunk {
		end := min(start+chunk, len(users))
		args := []any{end - start}
		for _, u := range users[start:end] {
			args = append(args, u, held[u])
		}
		if err := c.scripts.restore.Run(ctx, c.rdb, []string{ck.held, ck.claims}, args...).Err(); err != nil {
			return classify(err)
		}
		if end == len(users) {
			break
		}
	}
	for start := 0; start < len(claims); start += chunk {
		end := min(start+chunk, len(claims))
		args := []any{0}
		for _, cl := range claims[start:end] {
			args = append(args, cl.ID, encodeClaim(cl, "granted"))
		}
		if err := c.scripts.restore.Run(ctx, c.rdb, []string{ck.held, ck.claims}, args...).Err(); err != nil {
			return classify(err)
		}
	}
	return nil
}
