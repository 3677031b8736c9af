package domain

import (
	"testing"
	"time"
)

func TestGrantStartPlan(t *testing.T) {
	now := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	plan := GrantStartPlan{MaxDelay: 24 * time.Hour, EarlySlop: 5 * time.Second}
	camp := func(mode Mode, status Status, startsIn, endsIn time.Duration) Campaign {
		return Campaign{ID: "c", Mode: mode, Status: status, StartsAt: now.Add(startsIn), EndsAt: now.Add(endsIn), Version: 3}
	}
	grant := camp(ModeGrant, StatusActive, time.Hour, 2*time.Hour)

	schedule := []struct {
		name string
		c    Campaign
		ok   bool
		at   time.Time
	}{
		{"grant ahead: at its start", grant, true, now.Add(time.Hour)},
		{"grant already running: now", camp(ModeGrant, StatusActive, -time.Minute, time.Hour), true, now},
		{"grant beyond the broker's reach: as far as it goes", camp(ModeGrant, StatusActive, 50*time.Hour, 60*time.Hour), true, now.Add(24 * time.Hour)},
		{"claim campaign: none", camp(ModeClaim, StatusActive, time.Hour, 2*time.Hour), false, time.Time{}},
		{"paused: none", camp(ModeGrant, StatusPaused, time.Hour, 2*time.Hour), false, time.Time{}},
		{"ended: none", camp(ModeGrant, StatusActive, -2*time.Hour, -time.Hour), false, time.Time{}},
	}
	for _, tc := range schedule {
		at, ok := plan.Schedule(tc.c, now)
		if ok != tc.ok || !at.Equal(tc.at) {
			t.Errorf("Schedule: %s: %v %v, want %v %v", tc.name, at, ok, tc.at, tc.ok)
		}
	}

	next := []struct {
		name    string
		c       Campaign
		version int64
		want    GrantStartAction
		at      time.Time
	}{
		{"due: run", camp(ModeGrant, StatusActive, 0, time.Hour), 3, GrantStartRun, time.Time{}},
		{"late: run", camp(ModeGrant, StatusActive, -time.Minute, time.Hour), 3, GrantStartRun, time.Time{}},
		{"a little early: wait for the start", camp(ModeGrant, StatusActive, 3*time.Second, time.Hour), 3, GrantStartWait, now.Add(3 * time.Second)},
		{"well ahead (a hop): send again", grant, 3, GrantStartHop, now.Add(time.Hour)},
		{"far ahead: send again as far as it goes", camp(ModeGrant, StatusActive, 30*time.Hour, 40*time.Hour), 3, GrantStartHop, now.Add(24 * time.Hour)},
		{"written since: drop", camp(ModeGrant, StatusActive, 0, time.Hour), 2, GrantStartDrop, time.Time{}},
		{"paused: drop", camp(ModeGrant, StatusPaused, 0, time.Hour), 3, GrantStartDrop, time.Time{}},
		{"ended: drop", camp(ModeGrant, StatusActive, -2*time.Hour, -time.Hour), 3, GrantStartDrop, time.Time{}},
		{"claim campaign: drop", camp(ModeClaim, StatusActive, 0, time.Hour), 3, GrantStartDrop, time.Time{}},
	}
	for _, tc := range next {
		got, at := plan.Next(tc.c, tc.version, now)
		if got != tc.want || !at.Equal(tc.at) {
			t.Errorf("Next: %s: %v %v, want %v %v", tc.name, got, at, tc.want, tc.at)
		}
	}
}
