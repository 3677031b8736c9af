package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

// RecordResult is domain.RecordResult, the services' port type.
type RecordResult = domain.RecordResult

// RecordClaims writes a batch of grants in one transaction. A claim already recorded (a redelivery, an
// overlapping batch, the timer's replay) changes nothing; for each new one the campaign's issued count
// grows and a points cost becomes a debit entry keyed by the claim id. Rows are taken in id order and
// campaigns and users updated in id order, so concurrent batches queue instead of deadlocking.
//
// Almost every batch is wholly new (redeliveries are rare), so it is first written with multi-row
// INSERTs: a few round trips instead of one per grant, which is what bounds a backlog's drain. Only
// when that finds a claim recorded already does the batch fall back to one INSERT per claim, the only
// way to learn which claims were new and so what to add to issued and debited.
func (s *Store) RecordClaims(ctx context.Context, claims []domain.Claim) (RecordResult, error) {
	sorted := append([]domain.Claim(nil), claims...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	unique := make([]domain.Claim, 0, len(sorted))
	for i, c := range sorted {
		if i > 0 && sorted[i-1].ID == c.ID {
			continue
		}
		unique = append(unique, c)
	}
	var res RecordResult
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res = RecordResult{Duplicates: len(sorted) - len(unique)}
		return recordAllNew(ctx, tx, unique, &res)
	})
	if !errors.Is(err, errSomeRecorded) {
		return res, err
	}
	// Some were recorded: a redelivery, or the backstop, whose batches are almost all recorded. A
	// claim row is never removed, so those found are duplicates for sure, and the rest are tried
	// together again; only a batch that raced another writer goes one claim at a time.
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res = RecordResult{Duplicates: len(sorted) - len(unique)}
		ids := make([]string, len(unique))
		for i, c := range unique {
			ids[i] = c.ID
		}
		found, err := existingClaims(ctx, tx, ids) // read in the transaction
		if err != nil {
			return err
		}
		missing := make([]domain.Claim, 0, len(unique))
		for _, c := range unique {
			if !found[c.ID] {
				missing = append(missing, c)
			}
		}
		res.Duplicates += len(unique) - len(missing)
		return recordAllNew(ctx, tx, missing, &res)
	})
	if !errors.Is(err, errSomeRecorded) {
		return res, err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res = RecordResult{Duplicates: len(sorted) - len(unique)}
		return recordOneByOne(ctx, tx, unique, &res)
	})
	return res, err
}

// errSomeRecorded rolls back the multi-row attempt: a claim of the batch was in MySQL already.
var errSomeRecorded = errors.New("a claim of the batch is recorded already")

// claimRowsPerInsert keeps a multi-row INSERT's placeholders (8 a row) far below MySQL's 65,535.
const claimRowsPerInsert = 1000

func recordAllNew(ctx context.Context, tx *sql.Tx, claims []domain.Claim, res *RecordResult) error {
	issued := map[string]int64{}
	debits := map[string]int64{}
	var costly []domain.Claim
	for start := 0; start < len(claims); start += claimRowsPerInsert {
		part := claims[start:min(start+claimRowsPerInsert, len(claims))]
		args := make([]any, 0, 8*len(part))
		for _, c := range part {
			args = append(args, c.ID, c.CampaignID, c.UserID, c.RequestID, string(c.Benefit.Type), c.Benefit.Amount, c.CostPoints, c.GrantedAt.UTC())
			issued[c.CampaignID]++
			if c.CostPoints > 0 {
				costly = append(costly, c)
				debits[c.UserID] += c.CostPoints
			}
		}
		// ON DUPLICATE KEY UPDATE id = id counts an existing row as 0 affected, a new one as 1.
		r, err := tx.ExecContext(ctx, `INSERT INTO claims (`+claimColumns+`) VALUES `+placeholders(len(part), 8)+` ON DUPLICATE KEY UPDATE id = id`, args...)
		if err != nil {
			return classify(err)
		}
		if n, _ := r.RowsAffected(); n != int64(len(part)) {
			return errSomeRecorded
		}
	}
	for start := 0; start < len(costly); start += claimRowsPerInsert {
		part := costly[start:min(start+claimRowsPerInsert, len(costly))]
		args := make([]any, 0, 3*len(part))
		for _, c := range part {
			args = append(args, c.UserID, c.ID, c.CostPoints)
		}
		r, err := tx.ExecContext(ctx, "INSERT INTO points_entries (user_id, kind, ref, amount) VALUES "+
			strings.TrimSuffix(strings.Repeat("(?, 'debit', ?, ?), ", len(part)), ", ")+" ON DUPLICATE KEY UPDATE id = id", args...)
		if err != nil {
			return classify(err)
		}
		if n, _ := r.RowsAffected(); n != int64(len(part)) {
			return errSomeRecorded
		}
	}
	res.Inserted += len(claims)
	return applyCounts(ctx, tx, issued, debits)
}

// querier is what existingClaims reads through: the pool, or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// existingClaims reports which of ids are recorded, in IN lists of at most claimRowsPerInsert.
func existingClaims(ctx context.Context, q querier, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	for start := 0; start < len(ids); start += claimRowsPerInsert {
		part := ids[start:min(start+claimRowsPerInsert, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		rows, err := q.QueryContext(ctx, "SELECT id FROM claims WHERE id IN (?"+strings.Repeat(", ?", len(part)-1)+")", args...)
		if err != nil {
			return nil, classify(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, classify(err)
			}
			out[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, classify(err)
		}
	}
	return out, nil
}

func placeholders(rows, cols int) string {
	one := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

func recordOneByOne(ctx context.Context, tx *sql.Tx, claims []domain.Claim, res *RecordResult) error {
	issued := map[string]int64{}
	debits := map[string]int64{}
	for _, c := range claims {
		r, err := tx.ExecContext(ctx, `INSERT INTO claims (id, campaign_id, user_id, request_id, benefit_type, benefit_amount, cost_points, granted_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id`,
			c.ID, c.CampaignID, c.UserID, c.RequestID, string(c.Benefit.Type), c.Benefit.Amount, c.CostPoints, c.GrantedAt.UTC())
		if err != nil {
			return classify(err)
		}
		if n, _ := r.RowsAffected(); n != 1 {
			res.Duplicates++
			continue
		}
		res.Inserted++
		issued[c.CampaignID]++
		if c.CostPoints > 0 {
			r, err := tx.ExecContext(ctx, "INSERT INTO points_entries (user_id, kind, ref, amount) VALUES (?, 'debit', ?, ?) ON DUPLICATE KEY UPDATE id = id",
				c.UserID, c.ID, c.CostPoints)
			if err != nil {
				return classify(err)
			}
			if n, _ := r.RowsAffected(); n == 1 {
				debits[c.UserID] += c.CostPoints
			}
		}
	}
	return applyCounts(ctx, tx, issued, debits)
}

func applyCounts(ctx context.Context, tx *sql.Tx, issued, debits map[string]int64) error {
	for _, id := range sortedKeys(issued) {
		r, err := tx.ExecContext(ctx, "UPDATE campaigns SET issued = issued + ? WHERE id = ?", issued[id], id)
		if err != nil {
			return classify(err)
		}
		if n, _ := r.RowsAffected(); n != 1 {
			return fault.Permanent(fmt.Errorf("grant for unknown campaign %s", id))
		}
	}
	for _, id := range sortedKeys(debits) {
		r, err := tx.ExecContext(ctx, "UPDATE users SET points_debited = points_debited + ? WHERE id = ?", debits[id], id)
		if err != nil {
			return classify(err)
		}
		// A points cost is only payable from credits, and credits exist only for users in MySQL; a
		// missing user here is a defect worth a retry after an operator looks, not a silent loss.
		if n, _ := r.RowsAffected(); n != 1 {
			return fault.Permanent(fmt.Errorf("points debit for unknown user %s", id))
		}
	}
	return nil
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const claimColumns = "id, campaign_id, user_id, request_id, benefit_type, benefit_amount, cost_points, granted_at"

func scanClaim(row scanner) (domain.Claim, error) {
	var c domain.Claim
	var benefit string
	err := row.Scan(&c.ID, &c.CampaignID, &c.UserID, &c.RequestID, &benefit, &c.Benefit.Amount, &c.CostPoints, &c.GrantedAt)
	c.Benefit.Type = domain.BenefitType(benefit)
	c.GrantedAt = c.GrantedAt.UTC()
	return c, err
}

func (s *Store) queryClaims(ctx context.Context, query string, args ...any) ([]domain.Claim, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []domain.Claim
	for rows.Next() {
		c, err := scanClaim(rows)
		if err != nil {
			return nil, classify(err)
		}
		out = append(out, c)
	}
	return out, classify(rows.Err())
}

func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMilli(), 10) + "|" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		ms, id, ok := strings.Cut(string(raw), "|")
		if n, perr := strconv.ParseInt(ms, 10, 64); ok && perr == nil && domain.ValidID(id) {
			return time.UnixMilli(n).UTC(), id, nil
		}
	}
	return time.Time{}, "", domain.Invalid("cursor", "is not a cursor this API returned")
}

// ClaimsOfUser lists a user's claims newest first; cursor is the previous page's next cursor.
func (s *Store) ClaimsOfUser(ctx context.Context, userID, cursor string, limit int) ([]domain.Claim, string, error) {
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	var claims []domain.Claim
	var err error
	if cursor == "" {
		claims, err = s.queryClaims(ctx, "SELECT "+claimColumns+" FROM claims WHERE user_id = ? ORDER BY granted_at DESC, id DESC LIMIT ?", userID, limit+1)
	} else {
		at, id, cerr := decodeCursor(cursor)
		if cerr != nil {
			return nil, "", cerr
		}
		claims, err = s.queryClaims(ctx, "SELECT "+claimColumns+` FROM claims WHERE user_id = ?
			AND (granted_at < ? OR (granted_at = ? AND id < ?)) ORDER BY granted_at DESC, id DESC LIMIT ?`, userID, at, at, id, limit+1)
	}
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(claims) > limit {
		claims = claims[:limit]
		last := claims[limit-1]
		next = encodeCursor(last.GrantedAt, last.ID)
	}
	return claims, next, nil
}

// ExistingClaims reports which of ids the ledger has recorded.
// IssuedAndRecorded reads a campaign's issued count and which of ids are recorded from one snapshot
// (a REPEATABLE READ transaction), so a grant the ledger writes meanwhile is counted once: in both
// answers or in neither.
func (s *Store) IssuedAndRecorded(ctx context.Context, campaignID string, ids []string) (int64, map[string]bool, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return 0, nil, classify(err)
	}
	defer tx.Rollback()
	var issued int64
	if err := tx.QueryRowContext(ctx, "SELECT issued FROM campaigns WHERE id = ?", campaignID).Scan(&issued); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil, domain.Refuse(domain.CodeCampaignNotFound, "no campaign %s", campaignID)
		}
		return 0, nil, classify(err)
	}
	recorded := make(map[string]bool, len(ids))
	for start := 0; start < len(ids); start += 500 {
		end := min(start+500, len(ids))
		args := make([]any, 0, end-start)
		for _, id := range ids[start:end] {
			args = append(args, id)
		}
		rows, err := tx.QueryContext(ctx, "SELECT id FROM claims WHERE id IN (?"+strings.Repeat(", ?", len(args)-1)+")", args...)
		if err != nil {
			return 0, nil, classify(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return 0, nil, classify(err)
			}
			recorded[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, nil, classify(err)
		}
	}
	return issued, recorded, classify(tx.Commit())
}

func (s *Store) ExistingClaims(ctx context.Context, ids []string) (map[string]bool, error) {
	return existingClaims(ctx, s.db, ids)
}

// CampaignClaims pages through a campaign's recorded claims by id, for the cache rebuild.
func (s *Store) CampaignClaims(ctx context.Context, campaignID, afterID string, limit int) ([]domain.Claim, error) {
	return s.queryClaims(ctx, "SELECT "+claimColumns+" FROM claims WHERE campaign_id = ? AND id > ? ORDER BY id LIMIT ?", campaignID, afterID, limit)
}

// Cursor is domain.GrantCursor, the services' port type.
type Cursor = domain.GrantCursor

// GrantCandidates pages through users oldest registration first (ties by id), saying for each whether
// the campaign already granted them.
func (s *Store) GrantCandidates(ctx context.Context, campaignID string, after Cursor, limit int) ([]domain.GrantCandidate, Cursor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT u.id, u.registered_at, u.member,
			EXISTS (SELECT 1 FROM claims c WHERE c.user_id = u.id AND c.campaign_id = ?)
		FROM users u
		WHERE u.registered_at > ? OR (u.registered_at = ? AND u.id > ?)
		ORDER BY u.registered_at, u.id LIMIT ?`, campaignID, after.RegisteredAt.UTC(), after.RegisteredAt.UTC(), after.ID, limit)
	if err != nil {
		return nil, after, classify(err)
	}
	defer rows.Close()
	var out []domain.GrantCandidate
	next := after
	for rows.Next() {
		var g domain.GrantCandidate
		if err := rows.Scan(&g.UserID, &g.RegisteredAt, &g.Member, &g.AlreadyHeld); err != nil {
			return nil, after, classify(err)
		}
		g.RegisteredAt = g.RegisteredAt.UTC()
		out = append(out, g)
		next = Cursor{RegisteredAt: g.RegisteredAt, ID: g.UserID}
	}
	return out, next, classify(rows.Err())
}
