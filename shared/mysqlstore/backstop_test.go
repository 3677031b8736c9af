package mysqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

func TestBackstopBookkeeping(t *testing.T) {
	s, dsn := open(t)
	ctx := context.Background()
	other, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// One holder at a time, across instances; a released lock is free again.
	l1, err := s.LockBackstop(ctx, 0)
	if err != nil || l1 == nil {
		t.Fatalf("first lock: %v %v", l1, err)
	}
	if l2, err := other.LockBackstop(ctx, 100*time.Millisecond); err != nil || l2 != nil {
		t.Fatalf("second lock while held: %v %v", l2, err)
	}
	// Named locks are server-wide: another database on the same server has its own.
	elsewhere, _ := open(t)
	if l, err := elsewhere.LockBackstop(ctx, 0); err != nil || l == nil {
		t.Fatalf("another database's lock: %v %v", l, err)
	} else {
		l.Release()
	}
	l1.Release()
	l2, err := other.LockBackstop(ctx, 0)
	if err != nil || l2 == nil {
		t.Fatalf("lock after release: %v %v", l2, err)
	}
	// The holder's connection dying frees it too.
	if _, err := s.db.ExecContext(ctx, "KILL ?", connID(t, l2.(*BackstopLock))); err != nil {
		t.Fatal(err)
	}
	if l3, err := s.LockBackstop(ctx, 2*time.Second); err != nil || l3 == nil {
		t.Fatalf("lock after the holder died: %v %v", l3, err)
	} else {
		l3.Release()
	}
	if may, err := s.MayHaveGranted(ctx); err != nil || may {
		t.Fatalf("fresh database may have granted: %v %v", may, err)
	}
	// An unfinished run holds until its hold ends; a finished one holds nothing.
	done, err := s.StartBackstopRun(ctx, BackstopDrain, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartBackstopRun(ctx, BackstopSession, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if held, err := s.BackstopHeld(ctx); err != nil || held < 59*time.Minute || held > time.Hour {
		t.Fatalf("held %s %v, want about an hour", held, err)
	}
	if err := s.FinishBackstopRun(ctx, done); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishBackstopRun(ctx, done); err == nil {
		t.Fatal("a run finished twice")
	}
	if held, err := s.BackstopHeld(ctx); err != nil || held <= 2*time.Second || held > 3*time.Second {
		t.Fatalf("held %s %v, want the dead session's 3 s", held, err)
	}
	// A session moves its hold before each receive, shorter or longer; a finished one cannot.
	moving, err := s.StartBackstopRun(ctx, BackstopSession, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.HoldBackstopRun(ctx, moving, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if held, err := s.BackstopHeld(ctx); err != nil || held <= 4*time.Second || held > 5*time.Second {
		t.Fatalf("held %s %v after the hold moved to 5 s", held, err)
	}
	if err := s.FinishBackstopRun(ctx, moving); err != nil {
		t.Fatal(err)
	}
	if err := s.HoldBackstopRun(ctx, moving, time.Hour); err == nil {
		t.Fatal("a finished run's hold moved")
	}
	if may, err := s.MayHaveGranted(ctx); err != nil || !may {
		t.Fatalf("after a finished drain: %v %v", may, err)
	}
	// A database with claims but no drain yet (a deployment older than the backstop) may have granted.
	fresh, _ := open(t)
	if _, _, err := fresh.CreateCampaign(ctx, newCampaign("c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.RecordClaims(ctx, []domain.Claim{{ID: "clm1", CampaignID: "c1", UserID: "u", RequestID: "r",
		Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 1}, GrantedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	if may, err := fresh.MayHaveGranted(ctx); err != nil || !may {
		t.Fatalf("with a claim recorded: %v %v", may, err)
	}
}

func connID(t *testing.T, l *BackstopLock) int64 {
	t.Helper()
	var id int64
	if err := l.conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
