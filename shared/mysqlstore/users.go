package mysqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// UserRecord is domain.UserRecord, the services' port type.
type UserRecord = domain.UserRecord

const userColumns = "id, registered_at, member, points_credited, points_debited, version"

func scanUser(row scanner) (UserRecord, error) {
	var r UserRecord
	err := row.Scan(&r.User.ID, &r.User.RegisteredAt, &r.User.Member, &r.Credited, &r.Debited, &r.User.Version)
	r.User.RegisteredAt = r.User.RegisteredAt.UTC()
	r.User.Points = r.Credited - r.Debited
	return r, err
}

func (s *Store) userTx(ctx context.Context, tx *sql.Tx, id string) (UserRecord, error) {
	rec, err := scanUser(tx.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = ? FOR UPDATE", id))
	if errors.Is(err, sql.ErrNoRows) {
		return UserRecord{}, domain.Refuse(domain.CodeUserNotFound, "no user %s", id)
	}
	return rec, classify(err)
}

// PutUser creates or replaces a user's profile, bumping the version, with its outbox row.
func (s *Store) PutUser(ctx context.Context, id string, u domain.UserPut) (domain.User, OutboxEntry, error) {
	if !domain.ValidID(id) {
		return domain.User{}, OutboxEntry{}, domain.Invalid("user id", "must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	var out domain.User
	var entry OutboxEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, registered_at, member, version) VALUES (?, ?, ?, 1)
			ON DUPLICATE KEY UPDATE registered_at = VALUES(registered_at), member = VALUES(member), version = version + 1`,
			id, u.RegisteredAt.UTC(), u.Member)
		if err != nil {
			return classify(err)
		}
		rec, err := s.userTx(ctx, tx, id)
		if err != nil {
			return err
		}
		out = rec.User
		entry, err = insertOutbox(ctx, tx, "user", id, rec.User.Version)
		return err
	})
	return out, entry, err
}

// User reads one user.
func (s *Store) User(ctx context.Context, id string) (UserRecord, error) {
	rec, err := scanUser(s.db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return UserRecord{}, domain.Refuse(domain.CodeUserNotFound, "no user %s", id)
	}
	return rec, classify(err)
}

// Users pages through all users by id, for the cache rebuild.
func (s *Store) Users(ctx context.Context, afterID string, limit int) ([]UserRecord, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+userColumns+" FROM users WHERE id > ? ORDER BY id LIMIT ?", afterID, limit)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []UserRecord
	for rows.Next() {
		rec, err := scanUser(rows)
		if err != nil {
			return nil, classify(err)
		}
		out = append(out, rec)
	}
	return out, classify(rows.Err())
}

// CreditPoints credits c.Delta once per request id. A repeated request id credits nothing and returns
// the current user with a nil outbox entry.
func (s *Store) CreditPoints(ctx context.Context, id string, c domain.PointsCredit) (domain.User, *OutboxEntry, error) {
	var out domain.User
	var entry *OutboxEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rec, err := s.userTx(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO points_entries (user_id, kind, ref, amount) VALUES (?, 'credit', ?, ?)", id, c.RequestID, c.Delta)
		if isDup(err) {
			out = rec.User
			return nil
		}
		if err != nil {
			return classify(err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE users SET points_credited = points_credited + ?, version = version + 1 WHERE id = ?", c.Delta, id); err != nil {
			return classify(err)
		}
		rec.Credited += c.Delta
		rec.User.Points += c.Delta
		rec.User.Version++
		e, err := insertOutbox(ctx, tx, "user", id, rec.User.Version)
		if err != nil {
			return err
		}
		out, entry = rec.User, &e
		return nil
	})
	return out, entry, err
}

// SyncFailure is domain.SyncFailure, the services' port type.
type SyncFailure = domain.SyncFailure

// RecordSyncFailure stores f, truncating oversized text rather than failing to record it.
func (s *Store) RecordSyncFailure(ctx context.Context, f SyncFailure) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO sync_failures (entity, entity_id, version, reason, payload) VALUES (?, ?, ?, ?, ?)",
		truncate(f.Entity, 16), truncate(f.EntityID, 128), f.Version, truncate(f.Reason, 60000), truncate(f.Payload, 1<<20))
	return classify(err)
}

// SyncFailures lists recorded failures, newest first.
func (s *Store) SyncFailures(ctx context.Context, limit int) ([]SyncFailure, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, entity, entity_id, version, reason, payload, created_at FROM sync_failures ORDER BY id DESC LIMIT ?", limit)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []SyncFailure
	for rows.Next() {
		var f SyncFailure
		if err := rows.Scan(&f.ID, &f.Entity, &f.EntityID, &f.Version, &f.Reason, &f.Payload, &f.CreatedAt); err != nil {
			return nil, classify(err)
		}
		out = append(out, f)
	}
	return out, classify(rows.Err())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := s[:n]
	for len(cut) > 0 && cut[len(cut)-1]&0xC0 == 0x80 {
		cut = cut[:len(cut)-1]
	}
	if len(cut) > 0 && cut[len(cut)-1] >= 0xC0 {
		cut = cut[:len(cut)-1]
	}
	return cut
}
