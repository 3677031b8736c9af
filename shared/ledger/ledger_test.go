package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/ledger"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/storetest"
)

func TestMain(m *testing.M) { services.Main(m) }

var t0 = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

func open(t *testing.T) *mysqlstore.Store { return storetest.MySQL(t) }

func seed(t *testing.T, s *mysqlstore.Store, campaign string, users ...string) {
	t.Helper()
	ctx := context.Background()
	c := domain.Campaign{ID: campaign, Name: campaign, Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim, CostPoints: 10,
		StartsAt: t0, EndsAt: t0.Add(24 * time.Hour), Stock: 100, PerUserLimit: 5, Status: domain.StatusActive}
	if _, _, err := s.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if _, _, err := s.PutUser(ctx, u, domain.UserPut{RegisteredAt: t0.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreditPoints(ctx, u, domain.PointsCredit{Delta: 1000, RequestID: "seed"}); err != nil {
			t.Fatal(err)
		}
	}
}

func grant(campaign, user, request string, cost int64, i int) domain.Claim {
	return domain.Claim{ID: domain.ClaimID(user, request), CampaignID: campaign, UserID: user, RequestID: request,
		Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500}, CostPoints: cost, GrantedAt: t0.Add(time.Duration(i) * time.Millisecond)}
}

func msg(t *testing.T, c domain.Claim, delivery int) mqhandler.Message {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return mqhandler.Message{ID: fmt.Sprintf("%s-%d", c.ID, delivery), Topic: "grants", Tag: "grant", Body: b}
}

func count(t *testing.T, s *mysqlstore.Store, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.DB().QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDuplicatesAndRedeliveryInsertOnceAndDebitOnce(t *testing.T) {
	s := open(t)
	seed(t, s, "cmp", "alice", "bob")
	l := ledger.New(s)
	ctx := context.Background()
	a := grant("cmp", "alice", "r1", 10, 1)
	b := grant("cmp", "bob", "r1", 10, 2)
	c := grant("cmp", "alice", "r2", 10, 3)
	free := grant("cmp", "bob", "r2", 0, 4)
	steps := []struct {
		name  string
		batch []mqhandler.Message
		want  ledger.Result
	}{
		{"batch with a duplicate inside", []mqhandler.Message{msg(t, a, 1), msg(t, b, 1), msg(t, a, 2), msg(t, c, 1)},
			ledger.Result{Received: 4, Inserted: 3, Duplicates: 1}},
		{"redelivery of the same batch", []mqhandler.Message{msg(t, a, 1), msg(t, b, 1), msg(t, a, 2), msg(t, c, 1)},
			ledger.Result{Received: 4, Inserted: 0, Duplicates: 4}},
		{"overlapping batch", []mqhandler.Message{msg(t, c, 3), msg(t, free, 1)},
			ledger.Result{Received: 2, Inserted: 1, Duplicates: 1}},
	}
	for _, st := range steps {
		got, err := l.Record(ctx, st.batch)
		if err != nil || got != st.want {
			t.Fatalf("%s: %+v %v, want %+v", st.name, got, err, st.want)
		}
	}
	if n := count(t, s, "SELECT COUNT(*) FROM claims"); n != 4 {
		t.Fatalf("%d claims, want 4", n)
	}
	rec, _ := s.Campaign(ctx, "cmp")
	if rec.Issued != 4 {
		t.Fatalf("issued %d, want 4", rec.Issued)
	}
	for _, u := range []struct {
		id             string
		debited, count int64
	}{{"alice", 20, 2}, {"bob", 10, 1}} {
		rec, err := s.User(ctx, u.id)
		if err != nil || rec.Debited != u.debited || rec.User.Points != 1000-u.debited {
			t.Fatalf("%s: %+v %v, want debited %d", u.id, rec, err, u.debited)
		}
		if n := count(t, s, "SELECT COUNT(*) FROM points_entries WHERE user_id = ? AND kind = 'debit'", u.id); n != u.count {
			t.Fatalf("%s: %d debit entries, want %d", u.id, n, u.count)
		}
	}
	var got domain.Claim
	row := s.DB().QueryRow("SELECT id, campaign_id, user_id, request_id, cost_points, granted_at FROM claims WHERE id = ?", a.ID)
	if err := row.Scan(&got.ID, &got.CampaignID, &got.UserID, &got.RequestID, &got.CostPoints, &got.GrantedAt); err != nil {
		t.Fatal(err)
	}
	if got.UserID != "alice" || got.RequestID != "r1" || got.CostPoints != 10 || !got.GrantedAt.Equal(a.GrantedAt) {
		t.Fatalf("stored claim %+v, want %+v", got, a)
	}
}

func TestConcurrentRedeliveriesRecordOnce(t *testing.T) {
	s := open(t)
	seed(t, s, "cmp", "alice", "bob", "carol")
	l := ledger.New(s)
	var batch []mqhandler.Message
	var debit int64
	for i := 0; i < 30; i++ {
		u := []string{"alice", "bob", "carol"}[i%3]
		g := grant("cmp", u, fmt.Sprintf("r%d", i), int64(i%2), i)
		debit += g.CostPoints
		batch = append(batch, msg(t, g, 1))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	inserted := 0
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Overlapping slices in different orders, as several redeliveries would arrive.
			part := append([]mqhandler.Message(nil), batch[w*3:w*3+15]...)
			if w%2 == 1 {
				for i, j := 0, len(part)-1; i < j; i, j = i+1, j-1 {
					part[i], part[j] = part[j], part[i]
				}
			}
			for attempt := 0; ; attempt++ {
				r, err := l.Record(context.Background(), part)
				if err == nil {
					mu.Lock()
					inserted += r.Inserted
					mu.Unlock()
					return
				}
				if !fault.IsRetryable(err) || attempt > 20 {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	final, err := l.Record(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if inserted+final.Inserted != 30 || final.Duplicates != 30-final.Inserted {
		t.Fatalf("inserted %d concurrently + %d at the end, want 30 in all", inserted, final.Inserted)
	}
	rec, _ := s.Campaign(context.Background(), "cmp")
	if n := count(t, s, "SELECT COUNT(*) FROM claims"); n != 30 || rec.Issued != 30 {
		t.Fatalf("%d claims, issued %d; want 30", n, rec.Issued)
	}
	if d := count(t, s, "SELECT SUM(points_debited) FROM users"); d != debit {
		t.Fatalf("debited %d, want %d", d, debit)
	}
}

func TestPoisonIsRecordedAndDoesNotBlockTheBatch(t *testing.T) {
	s := open(t)
	seed(t, s, "cmp", "alice")
	l := ledger.New(s)
	good := grant("cmp", "alice", "r1", 10, 1)
	noTime := grant("cmp", "alice", "r2", 0, 1)
	noTime.GrantedAt = time.Time{}
	batch := []mqhandler.Message{
		{ID: "poison-1", Body: []byte(`{not json`)},
		msg(t, good, 1),
		{ID: "poison-2", Body: []byte(`{"id": "x", "extra": 1}`)},
		msg(t, noTime, 1),
	}
	r, err := l.Record(context.Background(), batch)
	if err != nil || r != (ledger.Result{Received: 4, Inserted: 1, Poison: 3}) {
		t.Fatalf("%+v %v", r, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM claims"); n != 1 {
		t.Fatalf("%d claims", n)
	}
	fails, err := s.SyncFailures(context.Background(), 10)
	if err != nil || len(fails) != 3 {
		t.Fatalf("sync failures: %+v %v", fails, err)
	}
	ids := map[string]string{}
	for _, f := range fails {
		if f.Entity != "grant" {
			t.Fatalf("failure entity %q", f.Entity)
		}
		ids[f.EntityID] = f.Payload
	}
	if ids["poison-1"] != `{not json` || ids["poison-2"] == "" {
		t.Fatalf("failures: %v", ids)
	}
	// A batch of nothing but poison is acknowledged.
	if r, err := l.Record(context.Background(), batch[:1]); err != nil || r.Poison != 1 || r.Inserted != 0 {
		t.Fatalf("all-poison batch: %+v %v", r, err)
	}
}

func TestGrantForUnknownCampaignIsParkedWithoutHoldingBackTheBatch(t *testing.T) {
	s := open(t)
	seed(t, s, "cmp", "alice")
	l := ledger.New(s)
	batch := []mqhandler.Message{msg(t, grant("cmp", "alice", "r1", 0, 1), 1), msg(t, grant("ghost", "alice", "r2", 0, 2), 1)}
	res, err := l.Record(context.Background(), batch)
	if err != nil {
		t.Fatalf("a batch with one unwritable grant failed: %v", err)
	}
	if res.Inserted != 1 || res.Poison != 1 {
		t.Fatalf("result %+v, want 1 inserted and 1 parked", res)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM claims"); n != 1 {
		t.Fatalf("%d claims recorded, want the good one", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM sync_failures WHERE entity = 'grant'"); n != 1 {
		t.Fatalf("%d sync failures, want the unwritable grant parked once", n)
	}
	if rec, _ := s.Campaign(context.Background(), "cmp"); rec.Issued != 1 {
		t.Fatalf("issued %d, want 1", rec.Issued)
	}
	// Redelivered, the good grant is a duplicate and nothing new is written.
	res, err = l.Record(context.Background(), batch[:1])
	if err != nil || res.Inserted != 0 || res.Duplicates != 1 {
		t.Fatalf("redelivery: %+v %v", res, err)
	}
}

// panicky is the real store, except that writing a grant of campaign "boom" panics, as a bug in the
// write path would.
type panicky struct{ *mysqlstore.Store }

func (p panicky) RecordClaims(ctx context.Context, claims []domain.Claim) (mysqlstore.RecordResult, error) {
	for _, c := range claims {
		if c.CampaignID == "boom" {
			var byCampaign map[string]int
			byCampaign[c.CampaignID]++ // assignment to a nil map: a panic
		}
	}
	return p.Store.RecordClaims(ctx, claims)
}

// Regression: a panic mid-batch used to escape the ledger (no recoverer), reach the runtime SDK, and
// send the whole batch through retries into the dead-letter queue without a line in sync_failures.
func TestPanicMidBatchIsRecordedWithItsStackAndSparesTheBatch(t *testing.T) {
	s := open(t)
	seed(t, s, "cmp", "alice")
	l := ledger.New(panicky{s})
	bad := grant("boom", "alice", "r2", 0, 2)
	batch := []mqhandler.Message{msg(t, grant("cmp", "alice", "r1", 0, 1), 1), msg(t, bad, 1), msg(t, grant("cmp", "alice", "r3", 0, 3), 1)}
	res, err := l.Record(context.Background(), batch)
	if err != nil || res != (ledger.Result{Received: 3, Inserted: 2, Poison: 1}) {
		t.Fatalf("result %+v %v, want 2 inserted and the panicking grant parked", res, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM claims"); n != 2 {
		t.Fatalf("%d claims recorded, want the two good ones", n)
	}
	fails, err := s.SyncFailures(context.Background(), 10)
	if err != nil || len(fails) != 1 {
		t.Fatalf("sync failures %+v %v, want one", fails, err)
	}
	f := fails[0]
	if f.Entity != "grant" || f.EntityID != bad.ID || f.Payload != string(batch[1].Body) {
		t.Fatalf("recorded %+v, want grant %s with its body", f, bad.ID)
	}
	// The stack names the frame that panicked, so an operator can find the bug from the record alone.
	if !strings.Contains(f.Reason, "assignment to entry in nil map") || !strings.Contains(f.Reason, "ledger_test.go") ||
		!strings.Contains(f.Reason, "panicky.RecordClaims") {
		t.Fatalf("reason lacks the panic and its stack: %q", f.Reason)
	}
}

// The FC entry point goes through the same path: the invocation succeeds and the batch is acknowledged.
func TestInvocationRecoversAPanicMidBatch(t *testing.T) {
	s := open(t)
	seed(t, s, "cmp", "alice")
	good, bad := grant("cmp", "alice", "r1", 0, 1), grant("boom", "alice", "r2", 0, 2)
	var events []map[string]any
	for i, c := range []domain.Claim{good, bad} {
		b, _ := json.Marshal(c)
		events = append(events, map[string]any{"id": fmt.Sprintf("ev-%d", i), "source": "acs:rocketmq", "specversion": "1.0",
			"type": "mq:Topic:SendMessage", "data": map[string]any{"topic": "benefit-grants", "body": string(b),
				"systemProperties": map[string]any{"TAGS": "grant", "UNIQ_KEY": fmt.Sprintf("msg-%d", i)}}})
	}
	payload, _ := json.Marshal(events)
	res, err := ledger.New(panicky{s}).Invocation(slog.New(slog.DiscardHandler))(context.Background(), payload)
	if err != nil || res != (ledger.Result{Received: 2, Inserted: 1, Poison: 1}) {
		t.Fatalf("invocation: %+v %v", res, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM sync_failures WHERE entity = 'grant' AND reason LIKE '%panic%'"); n != 1 {
		t.Fatalf("%d panics recorded, want 1", n)
	}
}
