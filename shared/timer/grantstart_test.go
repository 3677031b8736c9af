package timer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/timer"
)

func grantStartMsg(t *testing.T, campaign string, version int64) mqhandler.Message {
	t.Helper()
	b, err := json.Marshal(mq.GrantStart{CampaignID: campaign, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return mqhandler.Message{ID: "m-" + campaign, Topic: "benefit-grant-starts", Tag: mq.TagGrantStart, Body: b}
}

func TestGrantStartGrantsAtStartsAt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.mq.OnGrant = recordIn(f.store)
	start := t0
	f.campaign("g", true, func(c *domain.Campaign) {
		c.Mode, c.Stock, c.StartsAt, c.EndsAt = domain.ModeGrant, 2, start, start.Add(time.Hour)
	})
	for _, u := range []string{"u1", "u2", "u3"} {
		f.user(u, start.Add(-time.Hour), 0)
	}
	granted := func() int {
		var n int
		if err := f.store.DB().QueryRow("SELECT COUNT(*) FROM claims WHERE campaign_id = 'g'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	plan := domain.GrantStartPlan{MaxDelay: time.Hour, EarlySlop: 2 * time.Second}
	at := func(now time.Time) *timer.GrantStarts {
		return timer.NewGrantStarts(f.jobs(now, timer.Config{}), f.mq, plan)
	}

	// A message for an older version is stale: the write that made version 2 sent its own.
	if err := at(start).Handle(ctx, grantStartMsg(t, "g", 2)); err != nil || granted() != 0 || len(f.mq.GrantStarts()) != 0 {
		t.Fatalf("stale message: err %v, %d granted, %d re-sent", err, granted(), len(f.mq.GrantStarts()))
	}
	// Delivered three hours early (beyond one delay): sent again for as far as one delay goes.
	early := start.Add(-3 * time.Hour)
	if err := at(early).Handle(ctx, grantStartMsg(t, "g", 1)); err != nil || granted() != 0 {
		t.Fatalf("early message: err %v, %d granted", err, granted())
	}
	if re := f.mq.GrantStarts(); len(re) != 1 || re[0].CampaignID != "g" || re[0].Version != 1 || !re[0].DeliverAt.Equal(early.Add(time.Hour)) {
		t.Fatalf("re-sent %+v, want g v1 at %v", re, early.Add(time.Hour))
	}
	// A little early (within the slop): waits for starts_at, then grants. The clock moves here.
	began := time.Now()
	moving := func() time.Time { return start.Add(-300*time.Millisecond + time.Since(began)) }
	gs := timer.NewGrantStarts(timer.New(f.store, f.cache, f.mq, f.src, moving, timer.Config{}), f.mq, plan)
	if err := gs.Handle(ctx, grantStartMsg(t, "g", 1)); err != nil || granted() != 2 {
		t.Fatalf("slightly early message: err %v, %d granted, want 2", err, granted())
	}
	if waited := time.Since(began); waited < 250*time.Millisecond {
		t.Fatalf("granted after %v, before starts_at", waited)
	}
	// Redelivered: nothing is granted twice.
	if err := at(start.Add(time.Second)).Handle(ctx, grantStartMsg(t, "g", 1)); err != nil || granted() != 2 {
		t.Fatalf("redelivery: err %v, %d granted", err, granted())
	}
}

// The timer function takes FC's timer event and the grant-starts trigger's CloudEvents through one
// entry point.
func TestEntryTellsTimerEventsFromGrantStarts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.mq.OnGrant = recordIn(f.store)
	f.campaign("g", true, func(c *domain.Campaign) {
		c.Mode, c.Stock, c.StartsAt, c.EndsAt = domain.ModeGrant, 5, t0, t0.Add(time.Hour)
	})
	f.user("u1", t0.Add(-time.Hour), 0)
	jobs := f.jobs(t0, timer.Config{})
	entry := timer.Entry(jobs, timer.NewGrantStarts(jobs, f.mq, domain.GrantStartPlan{}), slog.New(slog.DiscardHandler))

	out, err := entry(ctx, json.RawMessage(`{"triggerTime":"2026-11-25T02:00:00Z","triggerName":"outbox-relay","payload":"outbox-relay"}`))
	if r, ok := out.(timer.Report); err != nil || !ok || r.Job != timer.JobOutboxRelay {
		t.Fatalf("timer event: %#v %v", out, err)
	}
	body, _ := json.Marshal(mq.GrantStart{CampaignID: "g", Version: 1})
	batch := fmt.Sprintf(`[{"id":"e1","source":"acs:rocketmq","specversion":"1.0","type":"mq:Topic:SendMessage",
		"data":{"topic":"benefit-grant-starts","body":%q,"systemProperties":{"TAGS":"grant-start","UNIQ_KEY":"m1"}}}]`, body)
	out, err = entry(ctx, json.RawMessage(batch))
	if r, ok := out.(mqhandler.Result); err != nil || !ok || r.Processed != 1 {
		t.Fatalf("grant-start batch: %#v %v", out, err)
	}
	var n int
	if err := f.store.DB().QueryRow("SELECT COUNT(*) FROM claims WHERE campaign_id = 'g' AND user_id = 'u1'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d grants to u1 (%v), want 1", n, err)
	}
	if _, err := entry(ctx, json.RawMessage(`{"not":`)); err == nil {
		t.Fatal("a garbage payload must fail the invocation")
	}
}
