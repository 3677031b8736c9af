package rediscache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// A claim its campaign refuses whoever asks is answered from reads alone, once the campaign has been
// seen refusing: no binding, no rate count.
// Anything that needs more (a replay, the audience, a request bound elsewhere) takes the full path and
// gets the answer it always got.
func TestEarlyRefusalsWriteNothingAndAnswerAsTheFullPath(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		camp   func(*domain.Campaign)
		before [][3]string // claims made first: user, campaign, request
		user   string
		req    string
		target string
		code   domain.Code
		early  bool   // answered without writing
		replay string // the campaign whose claim is replayed
	}{
		{name: "sold out", camp: func(c *domain.Campaign) { c.Stock = 1 }, before: [][3]string{{"alice", "c", "r1"}}, user: "bob", req: "r1", code: domain.CodeSoldOut, early: true},
		{name: "at the limit", before: [][3]string{{"alice", "c", "r1"}}, user: "alice", req: "r2", code: domain.CodeLimitReached, early: true},
		{name: "paused", camp: func(c *domain.Campaign) { c.Status = domain.StatusPaused }, user: "bob", req: "r1", code: domain.CodePaused, early: true},
		{name: "not started", camp: func(c *domain.Campaign) { c.StartsAt = now.Add(time.Minute) }, user: "bob", req: "r1", code: domain.CodeNotStarted, early: true},
		{name: "ended", camp: func(c *domain.Campaign) { c.EndsAt = now }, user: "bob", req: "r1", code: domain.CodeEnded, early: true},
		{name: "granted by the platform", camp: func(c *domain.Campaign) { c.Mode = domain.ModeGrant }, user: "bob", req: "r1", code: domain.CodeNotClaimable, early: true},
		{name: "a replay of a sold-out campaign's claim", camp: func(c *domain.Campaign) { c.Stock = 1 }, before: [][3]string{{"alice", "c", "r1"}}, user: "alice", req: "r1", replay: "c"},
		{name: "the audience is checked first", camp: func(c *domain.Campaign) { c.Stock = 0; c.Audience.Segment = domain.SegmentMembers }, user: "bob", req: "r1", code: domain.CodeNotEligible},
		{name: "a request granted elsewhere", camp: func(c *domain.Campaign) { c.Stock = 0 }, before: [][3]string{{"carol", "open", "r1"}}, user: "carol", req: "r1", replay: "open"},
		{name: "a campaign the cache lacks", user: "bob", req: "r1", target: "missing", code: domain.CodeCampaignNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, rdb := newCache(t)
			apply(t, c, campaign("open", 10, 1))
			camp := campaign("c", 10, 1)
			if tc.camp != nil {
				tc.camp(&camp)
			}
			apply(t, c, campaign("c", 10, 1)) // open while the claims made first are granted
			for _, b := range tc.before {
				if out := claim(t, c, b[0], b[1], b[2]); out.Code != "" {
					t.Fatalf("claim before: %+v", out)
				}
			}
			camp.Version = 2
			if r, err := c.ApplyCampaign(ctx, camp, 0); err != nil || !r.Applied {
				t.Fatalf("apply the campaign's shape: %+v %v", r, err)
			}
			target := "c"
			if tc.target != "" {
				target = tc.target
			}
			uk := keysOfUser(tc.user)
			ask := func(req string) ClaimOutcome {
				out, err := c.Claim(ctx, ClaimInput{UserID: tc.user, CampaignID: target, RequestID: req, Now: now, By: domain.ByClaim, RateLimit: 20})
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			// The first refusal this cache sees for the campaign takes the full path and marks it as
			// refusing; the claims after it are tried with reads first.
			ask("prime")
			countedBefore, _ := rdb.Get(ctx, uk.rate).Int()
			out := ask(tc.req)
			if tc.replay != "" {
				if out.Code != "" || !out.Replayed || out.Claim.CampaignID != tc.replay {
					t.Fatalf("got %+v, want the replay of the claim in %s", out, tc.replay)
				}
				return
			}
			if out.Code != tc.code {
				t.Fatalf("got %q, want %q", out.Code, tc.code)
			}
			bound := rdb.HExists(ctx, uk.req, tc.req).Val()
			countedAfter, _ := rdb.Get(ctx, uk.rate).Int()
			counted := countedAfter > countedBefore
			if bound {
				t.Fatalf("a refused request was left bound")
			}
			if counted == tc.early {
				t.Fatalf("rate counter written: %v; the refusal should be early: %v", counted, tc.early)
			}
		})
	}
}

// A campaign that grants is not tried with reads first: its claims keep their two round trips. Once it
// refuses, its claims are; and once it grants again (stock raised), they are not.
func TestOnlyRefusingCampaignsAreTriedWithReadsFirst(t *testing.T) {
	c, rdb := newCache(t)
	var refuseRuns atomic.Int64
	rdb.AddHook(countScript{sha: c.scripts.refuse.Hash(), n: &refuseRuns})
	camp := campaign("c", 2, 1)
	apply(t, c, camp)
	for _, u := range []string{"a", "b"} {
		if out := claim(t, c, u, "c", "r1"); out.Code != "" {
			t.Fatalf("%s: %+v", u, out)
		}
	}
	if n := refuseRuns.Load(); n != 0 {
		t.Fatalf("claim_refuse ran %d times for claims on a campaign that granted them", n)
	}
	for _, u := range []string{"x", "y", "z"} {
		if out := claim(t, c, u, "c", "r1"); out.Code != domain.CodeSoldOut {
			t.Fatalf("%s: %+v, want sold_out", u, out)
		}
	}
	if n := refuseRuns.Load(); n != 2 {
		t.Fatalf("claim_refuse ran %d times for 3 refusals, want 2 (after the first)", n)
	}
	camp.Version, camp.Stock = 2, 10
	apply(t, c, camp)
	for _, u := range []string{"p", "q"} {
		if out := claim(t, c, u, "c", "r1"); out.Code != "" {
			t.Fatalf("%s after the stock was raised: %+v", u, out)
		}
	}
	if n := refuseRuns.Load(); n != 3 {
		t.Fatalf("claim_refuse ran %d times, want 3: once more to find the campaign granting, then not", n)
	}
}

// countScript counts the EVALSHA (and EVAL fallback) calls of one script.
type countScript struct {
	sha string
	n   *atomic.Int64
}

func (h countScript) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h countScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.count(cmd)
		}
		return next(ctx, cmds)
	}
}
func (h countScript) count(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && cmd.Name() == "evalsha" && args[1] == h.sha {
		h.n.Add(1)
	}
}
