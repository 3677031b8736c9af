package mysqlstore

import (
	"context"
	"strings"
	"time"
)

// PendingOutbox lists unsent changes committed more than olderThan ago, oldest first. Fresh rows are
// left to the writer's own publish, which normally marks them sent within milliseconds.
func (s *Store) PendingOutbox(ctx context.Context, olderThan time.Duration, limit int) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, entity, entity_id, version FROM outbox
		WHERE sent_at IS NULL AND created_at <= ? ORDER BY created_at, id LIMIT ?`, time.Now().UTC().Add(-olderThan), limit)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		if err := rows.Scan(&e.ID, &e.Entity, &e.EntityID, &e.Version); err != nil {
			return nil, classify(err)
		}
		out = append(out, e)
	}
	return out, classify(rows.Err())
}

// MarkOutboxSent records that the changes were published.
func (s *Store) MarkOutboxSent(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, time.Now().UTC())
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := s.db.ExecContext(ctx, "UPDATE outbox SET sent_at = ? WHERE sent_at IS NULL AND id IN (?"+strings.Repeat(", ?", len(ids)-1)+")", args...)
	return classify(err)
}

// PruneOutbox deletes sent rows older than age.
func (s *Store) PruneOutbox(ctx context.Context, age time.Duration) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ? LIMIT 10000", time.Now().UTC().Add(-age))
	if err != nil {
		return 0, classify(err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
