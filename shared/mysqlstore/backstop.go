package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"github.com/benefit-issuance/benefits/shared/domain"
	"time"

	"github.com/benefit-issuance/benefits/shared/fault"
)

// The grant backstop's bookkeeping (shared/timer): one advisory lock so that one session at a time
// consumes its group, and a row per session so that a drain knows whether a session died holding
// messages invisible, and until when.

// backstopLockName is per database: MySQL's named locks are server-wide, and two deployments (or test
// databases) on one server must not exclude each other. Lock names are at most 64 characters.
const backstopLockName = "CONCAT('benefits_backstop:', SHA1(DATABASE()))"

// BackstopLock is the backstop's advisory lock (GET_LOCK), held by one connection: MySQL releases it
// when that connection ends, so an instance that dies does not keep it.
type BackstopLock struct{ conn *sql.Conn }

// LockBackstop takes the lock, waiting at most wait; nil without error when another session holds it.
func (s *Store) LockBackstop(ctx context.Context, wait time.Duration) (domain.Lock, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, classify(err)
	}
	// The lock's connection sits idle while the session works. If the instance is frozen or cut off
	// mid-session, MySQL drops the connection, and with it the lock, after this much idleness rather
	// than the server's wait_timeout (8 hours by default); longer than any session runs.
	if _, err := conn.ExecContext(ctx, "SET SESSION wait_timeout = 300"); err != nil {
		conn.Close()
		return nil, classify(err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+backstopLockName+", ?)", wait.Seconds()).Scan(&got); err != nil {
		conn.Close()
		return nil, classify(err)
	}
	if !got.Valid || got.Int64 != 1 {
		conn.Close()
		return nil, nil
	}
	return &BackstopLock{conn: conn}, nil
}

// Release gives the lock back (closing the connection would too).
func (l *BackstopLock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = l.conn.ExecContext(ctx, "SELECT RELEASE_LOCK("+backstopLockName+")")
	_ = l.conn.Close()
}

// Kinds of backstop sessions.
const (
	BackstopSession = domain.BackstopSession
	BackstopDrain   = domain.BackstopDrain
)

// StartBackstopRun records a session that may hold messages invisible until hold from now (by
// MySQL's clock, which every instance shares).
func (s *Store) StartBackstopRun(ctx context.Context, kind string, hold time.Duration) (int64, error) {
	r, err := s.db.ExecContext(ctx, `INSERT INTO grant_backstop_runs (kind, started_at, hold_until)
		VALUES (?, NOW(6), NOW(6) + INTERVAL ? MICROSECOND)`, kind, hold.Microseconds())
	if err != nil {
		return 0, classify(err)
	}
	id, err := r.LastInsertId()
	return id, classify(err)
}

// HoldBackstopRun moves an unfinished session's hold to hold from now. A session calls it before each
// receive, with the longest that receive's messages can stay invisible, so a session that dies holds
// the drain back only for what its last receive can still hide, not for its whole budget.
func (s *Store) HoldBackstopRun(ctx context.Context, id int64, hold time.Duration) error {
	r, err := s.db.ExecContext(ctx, `UPDATE grant_backstop_runs SET hold_until = NOW(6) + INTERVAL ? MICROSECOND
		WHERE id = ? AND finished_at IS NULL`, hold.Microseconds(), id)
	if err != nil {
		return classify(err)
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return fault.Permanent(errors.New("grant backstop: holding an unknown or finished run"))
	}
	return nil
}

// FinishBackstopRun records that a session ended holding nothing: every message it received was
// acknowledged. Old periodic sessions are forgotten; drains are kept (RebuiltBefore reads them).
func (s *Store) FinishBackstopRun(ctx context.Context, id int64) error {
	r, err := s.db.ExecContext(ctx, "UPDATE grant_backstop_runs SET finished_at = NOW(6) WHERE id = ? AND finished_at IS NULL", id)
	if err != nil {
		return classify(err)
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return fault.Permanent(errors.New("grant backstop: finishing an unknown or finished run"))
	}
	_, err = s.db.ExecContext(ctx, `DELETE FROM grant_backstop_runs WHERE kind = ? AND finished_at < NOW(6) - INTERVAL 1 DAY`, BackstopSession)
	return classify(err)
}

// BackstopHeld says how long messages may still be held invisible by sessions that never finished
// (0: none). Ask it while holding the lock, before starting a run: every unfinished run is then dead.
func (s *Store) BackstopHeld(ctx context.Context) (time.Duration, error) {
	var us sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(TIMESTAMPDIFF(MICROSECOND, NOW(6), hold_until))
		FROM grant_backstop_runs WHERE finished_at IS NULL`).Scan(&us)
	if err != nil {
		return 0, classify(err)
	}
	if !us.Valid || us.Int64 <= 0 {
		return 0, nil
	}
	return time.Duration(us.Int64) * time.Microsecond, nil
}

// MayHaveGranted reports whether claims may ever have been granted on this database: a cache rebuild's
// drain finished before (the cache was marked ready after it), or a claim is recorded (a deployment
// older than the backstop). Before either, the cache was never ready, so no claim can be in flight.
func (s *Store) MayHaveGranted(ctx context.Context) (bool, error) {
	var drained, claims bool
	err := s.db.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM grant_backstop_runs WHERE kind = ? AND finished_at IS NOT NULL),
		EXISTS (SELECT 1 FROM claims)`, BackstopDrain).Scan(&drained, &claims)
	return drained || claims, classify(err)
}
