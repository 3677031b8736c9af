package domain

import (
	"reflect"
	"testing"
	"time"
)

func TestSelectGrantees(t *testing.T) {
	now := t0
	c := validCampaign()
	c.Mode = ModeGrant
	c.Audience = Audience{SegmentNewUsers, days(30)}
	day := 24 * time.Hour
	users := []GrantCandidate{
		{UserID: "late", RegisteredAt: now.Add(-1 * day)},
		{UserID: "old", RegisteredAt: now.Add(-90 * day)}, // outside the audience
		{UserID: "b", RegisteredAt: now.Add(-10 * day)},
		{UserID: "a", RegisteredAt: now.Add(-10 * day)}, // same time as b: id breaks the tie
		{UserID: "first", RegisteredAt: now.Add(-29 * day)},
		{UserID: "done", RegisteredAt: now.Add(-20 * day), AlreadyHeld: true},
		{UserID: "first", RegisteredAt: now.Add(-29 * day)}, // duplicate row
	}
	cases := []struct {
		remaining int64
		want      []string
	}{
		{0, nil},
		{1, []string{"first"}},
		{3, []string{"first", "a", "b"}},
		{10, []string{"first", "a", "b", "late"}},
	}
	for _, tc := range cases {
		got := SelectGrantees(c, users, tc.remaining, now)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("remaining %d: got %v, want %v", tc.remaining, got, tc.want)
		}
	}
}

func TestGrantDue(t *testing.T) {
	c := validCampaign()
	c.Mode = ModeGrant
	cases := []struct {
		name   string
		mutate func(*Campaign)
		at     time.Time
		want   bool
	}{
		{"before start", func(*Campaign) {}, c.StartsAt.Add(-time.Second), false},
		{"at start", func(*Campaign) {}, c.StartsAt, true},
		{"at end", func(*Campaign) {}, c.EndsAt, false},
		{"paused", func(c *Campaign) { c.Status = StatusPaused }, c.StartsAt, false},
		{"claim mode", func(c *Campaign) { c.Mode = ModeClaim }, c.StartsAt, false},
	}
	for _, tc := range cases {
		cc := c
		tc.mutate(&cc)
		if got := GrantDue(cc, tc.at); got != tc.want {
			t.Errorf("%s: GrantDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReconcile(t *testing.T) {
	db := DBView{Version: 3, Stock: 10, Issued: 4}
	cases := []struct {
		name     string
		cache    CacheView
		inFlight int64
		want     Drift
	}{
		{"in sync", CacheView{true, 3, 10, 4, 0, false}, 0, DriftNone},
		{"missing", CacheView{}, 0, DriftMissing},
		{"stale version", CacheView{true, 2, 100000, 4, 0, false}, 0, DriftStaleVersion},
		{"ahead version", CacheView{true, 4, 10, 4, 0, false}, 0, DriftAheadVersion},
		{"same version other stock", CacheView{true, 3, 11, 4, 0, false}, 0, DriftStockMismatch},
		{"cache counts fewer", CacheView{true, 3, 10, 3, 0, false}, 0, DriftIssuedBehind},
		{"ledger draining", CacheView{true, 3, 10, 6, 0, false}, 2, DriftNone},
		{"lost grants", CacheView{true, 3, 10, 7, 0, false}, 2, DriftIssuedAhead},
		{"a change sealing buckets right now", CacheView{true, 2, 10, 4, time.Second, false}, 0, DriftStaleVersion},
		{"buckets sealed past the grace", CacheView{true, 3, 10, 4, SealGrace + time.Second, false}, 0, DriftSealed},
		{"sealed past the grace at an old version", CacheView{true, 2, 10, 4, time.Minute, false}, 0, DriftSealed},
		{"buckets giving up releases below the stock", CacheView{true, 3, 10, 4, 0, true}, 0, DriftUndersold},
		{"buckets giving up releases at the stock", CacheView{true, 3, 10, 10, 0, true}, 6, DriftNone},
		{"buckets giving up releases, still over the stock", CacheView{true, 3, 10, 12, 0, true}, 8, DriftNone},
		{"giving up and the cache behind MySQL", CacheView{true, 3, 10, 3, 0, true}, 0, DriftIssuedBehind},
	}
	for _, tc := range cases {
		if got := Reconcile(db, tc.cache, tc.inFlight); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestGrantsLost(t *testing.T) {
	cases := []struct {
		name                              string
		grantedBefore, dbIssued, streamed int64
		want                              bool
	}{
		{"all recorded", 5, 5, 0, false},
		{"some on their way", 5, 3, 2, false},
		{"recorded and granted since", 5, 7, 1, false},
		{"one neither recorded nor streamed", 5, 3, 1, true},
		{"nothing recorded, nothing streamed", 1, 0, 0, true},
		{"nothing granted", 0, 0, 0, false},
	}
	for _, tc := range cases {
		if got := GrantsLost(tc.grantedBefore, tc.dbIssued, tc.streamed); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
