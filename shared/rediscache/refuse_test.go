package rediscache

import (
	"context"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// A claim its campaign refuses whoever asks is answered from reads alone: no binding, no rate count.
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
			out, err := c.Claim(ctx, ClaimInput{UserID: tc.user, CampaignID: target, RequestID: tc.req, Now: now, By: domain.ByClaim, RateLimit: 20})
			if err != nil {
				t.Fatal(err)
			}
			if tc.replay != "" {
				if out.Code != "" || !out.Replayed || out.Claim.CampaignID != tc.replay {
					t.Fatalf("got %+v, want the replay of the claim in %s", out, tc.replay)
				}
				return
			}
			if out.Code != tc.code {
				t.Fatalf("got %q, want %q", out.Code, tc.code)
			}
			uk := keysOfUser(tc.user)
			bound := rdb.HExists(ctx, uk.req, tc.req).Val()
			counted := rdb.Exists(ctx, uk.rate).Val() == 1
			if bound {
				t.Fatalf("a refused request was left bound")
			}
			if counted == tc.early {
				t.Fatalf("rate counter written: %v; the refusal should be early: %v", counted, tc.early)
			}
		})
	}
}
