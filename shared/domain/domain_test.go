package domain

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC) // 10:00 in +08:00

func days(n int) *int { return &n }

func validCampaign() Campaign {
	return Campaign{
		ID:           "cmp_1",
		Name:         "New users: 5 yuan off, 10:00",
		Benefit:      Benefit{Type: BenefitCoupon, Amount: 500},
		Audience:     Audience{Segment: SegmentAll},
		Mode:         ModeClaim,
		StartsAt:     t0,
		EndsAt:       t0.Add(14 * time.Hour),
		Stock:        100,
		PerUserLimit: 1,
		Status:       StatusActive,
		Version:      1,
	}
}

func TestEveryCodeHasAStatus(t *testing.T) {
	want := map[Code]int{
		CodeInvalidRequest: 400, CodePayloadTooLarge: 413, CodeUnauthenticated: 401, CodeForbidden: 403,
		CodeCampaignNotFound: 404, CodeUserNotFound: 404, CodeVersionMismatch: 412, CodePreconditionRequired: 428,
		CodeNotClaimable: 409, CodeNotEligible: 403, CodeNotStarted: 409, CodeEnded: 409, CodePaused: 409,
		CodeSoldOut: 409, CodeLimitReached: 409, CodeInsufficientPoints: 409, CodeRateLimited: 429,
		CodeUnavailable: 503,
	}
	for code, status := range want {
		if got := code.HTTPStatus(); got != status {
			t.Errorf("%s: status %d, want %d", code, got, status)
		}
	}
	if got := Code("no_such_code").HTTPStatus(); got != 500 {
		t.Errorf("unknown code: status %d, want 500", got)
	}
	if got := CodeOf(errors.New("plain")); got != CodeInternal {
		t.Errorf("CodeOf(plain error) = %s", got)
	}
	if got := CodeOf(Invalid("x", "bad")); got != CodeInvalidRequest {
		t.Errorf("CodeOf(Invalid) = %s", got)
	}
}

func TestCampaignValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Campaign)
		field  string // "" means valid
	}{
		{"valid", func(c *Campaign) {}, ""},
		{"empty name", func(c *Campaign) { c.Name = "  " }, "name"},
		{"long name", func(c *Campaign) { c.Name = strings.Repeat("券", MaxNameLength+1) }, "name"},
		{"name at limit", func(c *Campaign) { c.Name = strings.Repeat("券", MaxNameLength) }, ""},
		{"bad benefit type", func(c *Campaign) { c.Benefit.Type = "cash" }, "benefit.type"},
		{"zero amount", func(c *Campaign) { c.Benefit.Amount = 0 }, "benefit.amount"},
		{"huge amount", func(c *Campaign) { c.Benefit.Amount = MaxAmount + 1 }, "benefit.amount"},
		{"red envelope", func(c *Campaign) { c.Benefit.Type = BenefitRedEnvelope }, ""},
		{"points benefit", func(c *Campaign) { c.Benefit.Type = BenefitPoints }, ""},
		{"bad segment", func(c *Campaign) { c.Audience.Segment = "vip" }, "audience.segment"},
		{"new users without days", func(c *Campaign) { c.Audience.Segment = SegmentNewUsers }, "audience.new_user_days"},
		{"new users 0 days", func(c *Campaign) { c.Audience = Audience{SegmentNewUsers, days(0)} }, "audience.new_user_days"},
		{"new users 3651 days", func(c *Campaign) { c.Audience = Audience{SegmentNewUsers, days(3651)} }, "audience.new_user_days"},
		{"new users 30 days", func(c *Campaign) { c.Audience = Audience{SegmentNewUsers, days(30)} }, ""},
		{"days with all", func(c *Campaign) { c.Audience.NewUserDays = days(30) }, "audience.new_user_days"},
		{"days with members", func(c *Campaign) { c.Audience = Audience{SegmentMembers, days(3)} }, "audience.new_user_days"},
		{"negative cost", func(c *Campaign) { c.CostPoints = -1 }, "cost_points"},
		{"bad mode", func(c *Campaign) { c.Mode = "lottery" }, "mode"},
		{"grant with cost", func(c *Campaign) { c.Mode = ModeGrant; c.CostPoints = 10 }, "cost_points"},
		{"grant", func(c *Campaign) { c.Mode = ModeGrant }, ""},
		{"no start", func(c *Campaign) { c.StartsAt = time.Time{} }, "starts_at"},
		{"end before start", func(c *Campaign) { c.EndsAt = c.StartsAt }, "ends_at"},
		{"negative stock", func(c *Campaign) { c.Stock = -1 }, "stock"},
		{"zero stock closes", func(c *Campaign) { c.Stock = 0 }, ""},
		{"zero limit", func(c *Campaign) { c.PerUserLimit = 0 }, "per_user_limit"},
		{"bad status", func(c *Campaign) { c.Status = "deleted" }, "status"},
		{"paused", func(c *Campaign) { c.Status = StatusPaused }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validCampaign()
			tc.mutate(&c)
			err := c.Validate()
			assertField(t, err, tc.field)
		})
	}
}

func assertField(t *testing.T, err error, field string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("want invalid %s, got %v", field, err)
	}
	if de.Code != CodeInvalidRequest || de.Field != field {
		t.Fatalf("want invalid_request on %q, got %s on %q (%s)", field, de.Code, de.Field, de.Message)
	}
	if !strings.Contains(de.Message, field) {
		t.Fatalf("message %q does not name the field %q", de.Message, field)
	}
}

func TestRemaining(t *testing.T) {
	cases := []struct{ stock, issued, want int64 }{
		{100, 0, 100}, {100, 99, 1}, {100, 100, 0}, {10, 37, 0}, {0, 0, 0},
	}
	for _, c := range cases {
		if got := Remaining(c.stock, c.issued); got != c.want {
			t.Errorf("Remaining(%d, %d) = %d, want %d", c.stock, c.issued, got, c.want)
		}
	}
}

func TestPatchApply(t *testing.T) {
	stock := int64(10)
	paused := StatusPaused
	c, err := CampaignPatch{Stock: &stock, Status: &paused}.Apply(validCampaign())
	if err != nil {
		t.Fatal(err)
	}
	if c.Stock != 10 || c.Status != StatusPaused || c.Name != validCampaign().Name {
		t.Fatalf("patch not merged: %+v", c)
	}
	end := t0.Add(-time.Hour)
	_, err = CampaignPatch{EndsAt: &end}.Apply(validCampaign())
	assertField(t, err, "ends_at")
	if !(CampaignPatch{}).Empty() || (CampaignPatch{Stock: &stock}).Empty() {
		t.Fatal("Empty is wrong")
	}
}

func TestEligible(t *testing.T) {
	now := t0
	thirty := Audience{SegmentNewUsers, days(30)}
	boundary := now.Add(-30 * 24 * time.Hour)
	cases := []struct {
		name     string
		audience Audience
		profile  Profile
		want     bool
	}{
		{"all, unknown user", Audience{Segment: SegmentAll}, Profile{}, true},
		{"members, unknown user", Audience{Segment: SegmentMembers}, Profile{}, false},
		{"members, member", Audience{Segment: SegmentMembers}, Profile{Known: true, Member: true}, true},
		{"members, non-member", Audience{Segment: SegmentMembers}, Profile{Known: true}, false},
		{"new users, unknown user", thirty, Profile{}, false},
		{"new users, registered just now", thirty, Profile{Known: true, RegisteredAt: now}, true},
		{"new users, one second inside the window", thirty, Profile{Known: true, RegisteredAt: boundary.Add(time.Second)}, true},
		{"new users, exactly on the boundary", thirty, Profile{Known: true, RegisteredAt: boundary}, false},
		{"new users, a second too old", thirty, Profile{Known: true, RegisteredAt: boundary.Add(-time.Second)}, false},
		{"new users, registered in the future", thirty, Profile{Known: true, RegisteredAt: now.Add(time.Hour)}, true},
		{"unknown segment", Audience{Segment: "vip"}, Profile{Known: true, Member: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.audience.Eligible(tc.profile, now); got != tc.want {
				t.Fatalf("Eligible = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecideClaim(t *testing.T) {
	member := Profile{Known: true, Member: true, RegisteredAt: t0.Add(-400 * 24 * time.Hour)}
	cases := []struct {
		name   string
		mutate func(*ClaimState)
		by     Issuance
		want   Code
	}{
		{"ok", func(s *ClaimState) {}, ByClaim, ""},
		{"grant campaign refuses claims", func(s *ClaimState) { s.Campaign.Mode = ModeGrant }, ByClaim, CodeNotClaimable},
		{"claim campaign refuses grants", func(s *ClaimState) {}, ByGrant, CodeNotClaimable},
		{"grant ok", func(s *ClaimState) { s.Campaign.Mode = ModeGrant }, ByGrant, ""},
		{"paused", func(s *ClaimState) { s.Campaign.Status = StatusPaused }, ByClaim, CodePaused},
		{"a second before start", func(s *ClaimState) { s.Now = s.Campaign.StartsAt.Add(-time.Second) }, ByClaim, CodeNotStarted},
		{"at start", func(s *ClaimState) { s.Now = s.Campaign.StartsAt }, ByClaim, ""},
		{"at end", func(s *ClaimState) { s.Now = s.Campaign.EndsAt }, ByClaim, CodeEnded},
		{"just before end", func(s *ClaimState) { s.Now = s.Campaign.EndsAt.Add(-time.Millisecond) }, ByClaim, ""},
		{"members only, non-member", func(s *ClaimState) {
			s.Campaign.Audience.Segment = SegmentMembers
			s.Profile.Member = false
		}, ByClaim, CodeNotEligible},
		{"members only, member", func(s *ClaimState) { s.Campaign.Audience.Segment = SegmentMembers }, ByClaim, ""},
		{"new users, old user", func(s *ClaimState) { s.Campaign.Audience = Audience{SegmentNewUsers, days(30)} }, ByClaim, CodeNotEligible},
		{"limit reached", func(s *ClaimState) { s.Held = 1 }, ByClaim, CodeLimitReached},
		{"limit 3, holds 2", func(s *ClaimState) { s.Campaign.PerUserLimit = 3; s.Held = 2 }, ByClaim, ""},
		{"sold out", func(s *ClaimState) { s.Issued = 100 }, ByClaim, CodeSoldOut},
		{"stock lowered below issued", func(s *ClaimState) { s.Campaign.Stock = 10; s.Issued = 50 }, ByClaim, CodeSoldOut},
		{"stock 0 closes", func(s *ClaimState) { s.Campaign.Stock = 0 }, ByClaim, CodeSoldOut},
		{"last unit", func(s *ClaimState) { s.Issued = 99 }, ByClaim, ""},
		{"paused wins over sold out", func(s *ClaimState) { s.Campaign.Status = StatusPaused; s.Issued = 100 }, ByClaim, CodePaused},
		{"limit wins over sold out", func(s *ClaimState) { s.Held = 1; s.Issued = 100 }, ByClaim, CodeLimitReached},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ClaimState{Campaign: validCampaign(), Profile: member, Now: t0.Add(time.Minute)}
			tc.mutate(&s)
			if got := DecideClaim(s, tc.by); got != tc.want {
				t.Fatalf("DecideClaim = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecidePoints(t *testing.T) {
	cases := []struct {
		balance, cost int64
		want          Code
	}{{0, 0, ""}, {10, 10, ""}, {9, 10, CodeInsufficientPoints}, {0, 1, CodeInsufficientPoints}, {100, 1, ""}}
	for _, c := range cases {
		if got := DecidePoints(c.balance, c.cost); got != c.want {
			t.Errorf("DecidePoints(%d, %d) = %q, want %q", c.balance, c.cost, got, c.want)
		}
	}
}

func TestIDs(t *testing.T) {
	cases := []struct {
		id   string
		want bool
	}{
		{"u1", true}, {"user_A-9", true}, {strings.Repeat("a", 64), true}, {strings.Repeat("a", 65), false},
		{"", false}, {"a b", false}, {"a/b", false}, {"ü", false}, {"{x}", false},
	}
	for _, c := range cases {
		if got := ValidID(c.id); got != c.want {
			t.Errorf("ValidID(%q) = %v", c.id, got)
		}
	}
	if ValidRequestID("a\nb") || !ValidRequestID("order 42/retry") || ValidRequestID("") {
		t.Error("ValidRequestID is wrong")
	}
	if ClaimID("u1", "r1") != ClaimID("u1", "r1") || ClaimID("u1", "r1") == ClaimID("u1", "r2") ||
		ClaimID("u1", "r1") == ClaimID("u2", "r1") || !ValidID(ClaimID("u1", "r1")) {
		t.Error("ClaimID is not a function of (user, request)")
	}
	id, err := NewCampaignID(bytes.NewReader(make([]byte, 10)))
	if err != nil || id != "cmp_00000000000000000000" || !ValidID(id) {
		t.Errorf("NewCampaignID = %q, %v", id, err)
	}
	if _, err := NewCampaignID(bytes.NewReader(nil)); err == nil {
		t.Error("NewCampaignID on an empty reader must fail")
	}
}
