package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

func TestMain(m *testing.M) { services.Main(m) }

var t0 = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := services.Env(t).MySQLDSN(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func newCampaign(id string) domain.Campaign {
	return domain.Campaign{ID: id, Name: "c", Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim, StartsAt: t0, EndsAt: t0.Add(time.Hour),
		Stock: 100, PerUserLimit: 1, Status: domain.StatusActive}
}

func count(t *testing.T, s *Store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrationsAreIdempotentAndConcurrent(t *testing.T) {
	s, dsn := open(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s2, err := Open(context.Background(), dsn)
			if err == nil {
				s2.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	files, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM schema_migrations"); n != int64(len(files)) || n < 2 {
		t.Fatalf("%d migration rows, want one per migration file (%d)", n, len(files))
	}
}

func TestCampaignWritesAndOptimisticConcurrency(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	c, entry, err := s.CreateCampaign(ctx, newCampaign("cmp_a"))
	if err != nil || c.Version != 1 || entry.Version != 1 || entry.EntityID != "cmp_a" || entry.Entity != "campaign" {
		t.Fatalf("create: %+v %+v %v", c, entry, err)
	}
	stock := int64(10)
	u, e2, err := s.UpdateCampaign(ctx, "cmp_a", 1, domain.CampaignPatch{Stock: &stock})
	if err != nil || u.Version != 2 || u.Stock != 10 || e2.Version != 2 {
		t.Fatalf("update: %+v %+v %v", u, e2, err)
	}
	outboxBefore := count(t, s, "SELECT COUNT(*) FROM outbox")
	_, _, err = s.UpdateCampaign(ctx, "cmp_a", 1, domain.CampaignPatch{Stock: &stock})
	if domain.CodeOf(err) != domain.CodeVersionMismatch {
		t.Fatalf("stale update: %v", err)
	}
	end := t0.Add(-time.Hour)
	_, _, err = s.UpdateCampaign(ctx, "cmp_a", 2, domain.CampaignPatch{EndsAt: &end})
	if domain.CodeOf(err) != domain.CodeInvalidRequest {
		t.Fatalf("invalid patch: %v", err)
	}
	_, _, err = s.UpdateCampaign(ctx, "nope", 1, domain.CampaignPatch{Stock: &stock})
	if domain.CodeOf(err) != domain.CodeCampaignNotFound {
		t.Fatalf("unknown: %v", err)
	}
	rec, err := s.Campaign(ctx, "cmp_a")
	if err != nil || rec.Campaign.Version != 2 || rec.Campaign.Stock != 10 {
		t.Fatalf("after refused writes: %+v %v", rec, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM outbox"); n != outboxBefore {
		t.Fatalf("refused writes left %d outbox rows", n-outboxBefore)
	}
	days := 30
	c2 := newCampaign("cmp_b")
	c2.Audience = domain.Audience{Segment: domain.SegmentNewUsers, NewUserDays: &days}
	if _, _, err := s.CreateCampaign(ctx, c2); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Campaign(ctx, "cmp_b")
	if got.Campaign.Audience.NewUserDays == nil || *got.Campaign.Audience.NewUserDays != 30 || !got.Campaign.StartsAt.Equal(t0) {
		t.Fatalf("round trip: %+v", got.Campaign)
	}
	if _, _, err := s.CreateCampaign(ctx, newCampaign("cmp_a")); err == nil || fault.IsRetryable(err) {
		t.Fatalf("duplicate id: %v", err)
	}
	all, err := s.Campaigns(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %d %v", len(all), err)
	}
	live, _ := s.LiveCampaigns(ctx, t0.Add(2*time.Hour), 0)
	if len(live) != 0 {
		t.Fatalf("ended campaigns listed as live: %d", len(live))
	}
	live, _ = s.LiveCampaigns(ctx, t0.Add(2*time.Hour), 2*time.Hour)
	if len(live) != 2 {
		t.Fatalf("within grace: %d", len(live))
	}
}

func TestConcurrentPatchesOneWins(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	if _, _, err := s.CreateCampaign(ctx, newCampaign("race")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			stock := int64(i)
			_, _, err := s.UpdateCampaign(ctx, "race", 1, domain.CampaignPatch{Stock: &stock})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if domain.CodeOf(err) != domain.CodeVersionMismatch {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent updates from version 1 succeeded", wins)
	}
}

func TestUsersAndPointsCreditsOnce(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	if _, _, err := s.CreditPoints(ctx, "ghost", domain.PointsCredit{Delta: 5, RequestID: "r"}); domain.CodeOf(err) != domain.CodeUserNotFound {
		t.Fatalf("credit to unknown user: %v", err)
	}
	u, e, err := s.PutUser(ctx, "u1", domain.UserPut{RegisteredAt: t0, Member: true})
	if err != nil || u.Version != 1 || e.Version != 1 {
		t.Fatalf("put: %+v %v", u, err)
	}
	u, e, err = s.PutUser(ctx, "u1", domain.UserPut{RegisteredAt: t0.Add(time.Hour)})
	if err != nil || u.Version != 2 || u.Member || e.Version != 2 {
		t.Fatalf("second put: %+v %v", u, err)
	}
	u, entry, err := s.CreditPoints(ctx, "u1", domain.PointsCredit{Delta: 50, RequestID: "credit-1"})
	if err != nil || entry == nil || u.Points != 50 || u.Version != 3 {
		t.Fatalf("credit: %+v %+v %v", u, entry, err)
	}
	u, entry, err = s.CreditPoints(ctx, "u1", domain.PointsCredit{Delta: 50, RequestID: "credit-1"})
	if err != nil || entry != nil || u.Points != 50 || u.Version != 3 {
		t.Fatalf("repeated credit: %+v %+v %v", u, entry, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM outbox WHERE entity = 'user'"); n != 3 {
		t.Fatalf("%d user outbox rows, want 3", n)
	}
	rec, err := s.User(ctx, "u1")
	if err != nil || rec.Credited != 50 || rec.User.Points != 50 || !rec.User.RegisteredAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("user: %+v %v", rec, err)
	}
	if _, err := s.User(ctx, "nobody"); domain.CodeOf(err) != domain.CodeUserNotFound {
		t.Fatalf("unknown user: %v", err)
	}
}

func grant(id, campaign, user string, cost int64, at time.Time) domain.Claim {
	return domain.Claim{ID: id, CampaignID: campaign, UserID: user, RequestID: "req-" + id,
		Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500}, CostPoints: cost, GrantedAt: at}
}

func TestRecordClaimsIsIdempotent(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	s.CreateCampaign(ctx, newCampaign("cmp"))
	s.PutUser(ctx, "u", domain.UserPut{RegisteredAt: t0})
	s.CreditPoints(ctx, "u", domain.PointsCredit{Delta: 1000, RequestID: "c"})
	var batch []domain.Claim
	for i := 0; i < 50; i++ {
		batch = append(batch, grant(fmt.Sprintf("clm_%02d", i), "cmp", "u", 10, t0.Add(time.Duration(i)*time.Second)))
	}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Overlapping, redelivered batches, some with duplicates inside.
			part := append([]domain.Claim{}, batch[w*5:w*5+25]...)
			part = append(part, part[0])
			for {
				_, err := s.RecordClaims(ctx, part)
				if err == nil {
					return
				}
				if !fault.IsRetryable(err) {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	res, err := s.RecordClaims(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 0 || res.Duplicates != 50 {
		// Batches covered claims 0..49: everything is in already.
		t.Fatalf("replaying the full batch: %+v", res)
	}
	rec, _ := s.Campaign(ctx, "cmp")
	user, _ := s.User(ctx, "u")
	if rec.Issued != 50 || user.Debited != 500 || user.User.Points != 500 {
		t.Fatalf("issued %d debited %d points %d, want 50, 500, 500", rec.Issued, user.Debited, user.User.Points)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM points_entries WHERE kind = 'debit'"); n != 50 {
		t.Fatalf("%d debit entries", n)
	}
	if _, err := s.RecordClaims(ctx, []domain.Claim{grant("clm_x", "no_such_campaign", "u", 0, t0)}); err == nil || fault.IsRetryable(err) {
		t.Fatalf("grant for an unknown campaign: %v", err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM claims WHERE id = 'clm_x'"); n != 0 {
		t.Fatal("a failed batch left a half-written claim")
	}
}

func TestClaimsOfUserPaging(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	s.CreateCampaign(ctx, newCampaign("cmp"))
	var batch []domain.Claim
	for i := 0; i < 7; i++ {
		// Two claims share each timestamp, so the id tie-break is exercised.
		batch = append(batch, grant(fmt.Sprintf("clm_%d", i), "cmp", "pager", 0, t0.Add(time.Duration(i/2)*time.Second)))
	}
	batch = append(batch, grant("clm_other", "cmp", "someone", 0, t0))
	if _, err := s.RecordClaims(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var ids []string
	cursor := ""
	pages := 0
	for {
		page, next, err := s.ClaimsOfUser(ctx, "pager", cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, c := range page {
			ids = append(ids, c.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := "clm_6 clm_5 clm_4 clm_3 clm_2 clm_1 clm_0"
	if strings.Join(ids, " ") != want || pages != 3 {
		t.Fatalf("pages %d: %v, want %s", pages, ids, want)
	}
	if _, _, err := s.ClaimsOfUser(ctx, "pager", "garbage!", 3); domain.CodeOf(err) != domain.CodeInvalidRequest {
		t.Fatalf("bad cursor: %v", err)
	}
	have, err := s.ExistingClaims(ctx, []string{"clm_0", "clm_9", "clm_other"})
	if err != nil || !have["clm_0"] || have["clm_9"] || !have["clm_other"] {
		t.Fatalf("existing: %v %v", have, err)
	}
}

func TestGrantCandidatesOrder(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	s.CreateCampaign(ctx, newCampaign("g"))
	for _, u := range []struct {
		id  string
		reg time.Time
	}{{"late", t0}, {"b", t0.Add(-time.Hour)}, {"a", t0.Add(-time.Hour)}, {"first", t0.Add(-48 * time.Hour)}} {
		if _, _, err := s.PutUser(ctx, u.id, domain.UserPut{RegisteredAt: u.reg}); err != nil {
			t.Fatal(err)
		}
	}
	s.RecordClaims(ctx, []domain.Claim{grant("clm_b", "g", "b", 0, t0)})
	var got []string
	var cur Cursor
	for {
		page, next, err := s.GrantCandidates(ctx, "g", cur, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			got = append(got, fmt.Sprintf("%s:%v", c.UserID, c.AlreadyHeld))
		}
		cur = next
	}
	if strings.Join(got, " ") != "first:false a:false b:true late:false" {
		t.Fatalf("candidates: %v", got)
	}
}

func TestOutbox(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	_, e1, _ := s.CreateCampaign(ctx, newCampaign("o1"))
	_, e2, _ := s.CreateCampaign(ctx, newCampaign("o2"))
	if p, _ := s.PendingOutbox(ctx, time.Hour, 10); len(p) != 0 {
		t.Fatalf("fresh rows must wait: %v", p)
	}
	p, err := s.PendingOutbox(ctx, -time.Second, 10)
	if err != nil || len(p) != 2 || p[0].ID != e1.ID || p[1].ID != e2.ID {
		t.Fatalf("pending: %+v %v", p, err)
	}
	if err := s.MarkOutboxSent(ctx, e1.ID); err != nil {
		t.Fatal(err)
	}
	p, _ = s.PendingOutbox(ctx, -time.Second, 10)
	if len(p) != 1 || p[0].ID != e2.ID {
		t.Fatalf("after marking: %+v", p)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	long := newCampaign("toolong")
	long.Name = strings.Repeat("x", 200)
	if _, _, err := s.CreateCampaign(ctx, long); err != nil {
		t.Fatalf("a 200-character name fits: %v", err)
	}
	if err := s.RecordSyncFailure(ctx, SyncFailure{Entity: "change", EntityID: strings.Repeat("e", 500), Reason: "bad", Payload: strings.Repeat("p", 2<<20)}); err != nil {
		t.Fatalf("oversized failure record must be truncated, not refused: %v", err)
	}
	if f, _ := s.SyncFailures(ctx, 1); len(f) != 1 || f[0].Reason != "bad" {
		t.Fatalf("sync failures: %+v", f)
	}
	// Killing our own connection mid-use is a retryable failure.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id)
	killer, _ := sql.Open("mysql", services.Env(t).MySQLDSN(t))
	defer killer.Close()
	if _, err := killer.Exec(fmt.Sprintf("KILL %d", id)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, "SELECT 1")
	conn.Close()
	if err == nil || !fault.IsRetryable(classify(err)) {
		t.Fatalf("killed connection: %v (retryable=%v)", err, fault.IsRetryable(classify(err)))
	}
	s.Close()
	if _, err := s.Campaign(ctx, "toolong"); err == nil {
		t.Fatal("a closed store answered")
	}
}

func TestClassifyTreatsOnlyDataErrorsAsPermanent(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		retryable bool
	}{
		{"duplicate key", &mysql.MySQLError{Number: 1062}, false},
		{"foreign key", &mysql.MySQLError{Number: 1452}, false},
		{"data too long", &mysql.MySQLError{Number: 1406}, false},
		{"deadlock", &mysql.MySQLError{Number: 1213}, true},
		{"lock wait", &mysql.MySQLError{Number: 1205}, true},
		{"connection killed", &mysql.MySQLError{Number: 1927}, true},
		{"query interrupted", &mysql.MySQLError{Number: 1317}, true},
		{"read only after failover", &mysql.MySQLError{Number: 1290}, true},
		{"cancelled", context.Canceled, true},
		{"deadline", context.DeadlineExceeded, true},
		{"bad connection", driver.ErrBadConn, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := fault.IsRetryable(classify(c.err)); got != c.retryable {
				t.Fatalf("retryable = %v, want %v", got, c.retryable)
			}
		})
	}
}
