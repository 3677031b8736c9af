package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// OutboxEntry is domain.OutboxEntry, the services' port type.
type OutboxEntry = domain.OutboxEntry

// CampaignRecord is domain.CampaignRecord, the services' port type.
type CampaignRecord = domain.CampaignRecord

const campaignColumns = `id, name, benefit_type, benefit_amount, segment, new_user_days, cost_points, mode,
	starts_at, ends_at, stock, per_user_limit, status, version, buckets, issued`

type scanner interface{ Scan(dest ...any) error }

func scanCampaign(row scanner) (CampaignRecord, error) {
	var r CampaignRecord
	c := &r.Campaign
	var days sql.NullInt64
	var benefit, segment, mode, status string
	err := row.Scan(&c.ID, &c.Name, &benefit, &c.Benefit.Amount, &segment, &days, &c.CostPoints, &mode,
		&c.StartsAt, &c.EndsAt, &c.Stock, &c.PerUserLimit, &status, &c.Version, &c.Buckets, &r.Issued)
	if err != nil {
		return r, err
	}
	c.Benefit.Type, c.Audience.Segment, c.Mode, c.Status = domain.BenefitType(benefit), domain.Segment(segment), domain.Mode(mode), domain.Status(status)
	if days.Valid {
		d := int(days.Int64)
		c.Audience.NewUserDays = &d
	}
	c.StartsAt, c.EndsAt = c.StartsAt.UTC(), c.EndsAt.UTC()
	return r, nil
}

func nullableDays(a domain.Audience) any {
	if a.NewUserDays == nil {
		return nil
	}
	return *a.NewUserDays
}

func insertOutbox(ctx context.Context, tx *sql.Tx, entity, id string, version int64) (OutboxEntry, error) {
	res, err := tx.ExecContext(ctx, "INSERT INTO outbox (entity, entity_id, version) VALUES (?, ?, ?)", entity, id, version)
	if err != nil {
		return OutboxEntry{}, classify(err)
	}
	outID, err := res.LastInsertId()
	if err != nil {
		return OutboxEntry{}, classify(err)
	}
	return OutboxEntry{ID: outID, Entity: entity, EntityID: id, Version: version}, nil
}

// CreateCampaign inserts c at version 1 with its outbox row, in one transaction. c.ID is the caller's.
func (s *Store) CreateCampaign(ctx context.Context, c domain.Campaign) (domain.Campaign, OutboxEntry, error) {
	if err := c.Validate(); err != nil {
		return domain.Campaign{}, OutboxEntry{}, err
	}
	c.Version = 1
	c.Buckets = c.StockBuckets()
	c.StartsAt, c.EndsAt = c.StartsAt.UTC(), c.EndsAt.UTC()
	var entry OutboxEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO campaigns (`+campaignColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			c.ID, c.Name, string(c.Benefit.Type), c.Benefit.Amount, string(c.Audience.Segment), nullableDays(c.Audience),
			c.CostPoints, string(c.Mode), c.StartsAt, c.EndsAt, c.Stock, c.PerUserLimit, string(c.Status), c.Version, c.Buckets)
		if err != nil {
			return classify(err)
		}
		entry, err = insertOutbox(ctx, tx, "campaign", c.ID, c.Version)
		return err
	})
	if err != nil {
		return domain.Campaign{}, OutboxEntry{}, err
	}
	return c, entry, nil
}

// UpdateCampaign applies p to the campaign if its version is still expected: the row is locked, the
// patch merged and validated, the version bumped and the outbox row written in one transaction.
func (s *Store) UpdateCampaign(ctx context.Context, id string, expectedVersion int64, p domain.CampaignPatch) (domain.Campaign, OutboxEntry, error) {
	var updated domain.Campaign
	var entry OutboxEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rec, err := scanCampaign(tx.QueryRowContext(ctx, "SELECT "+campaignColumns+" FROM campaigns WHERE id = ? FOR UPDATE", id))
		if errors.Is(err, sql.ErrNoRows) {
			return domain.Refuse(domain.CodeCampaignNotFound, "no campaign %s", id)
		}
		if err != nil {
			return classify(err)
		}
		if rec.Campaign.Version != expectedVersion {
			return domain.Refuse(domain.CodeVersionMismatch, "campaign %s is at version %d, not %d", id, rec.Campaign.Version, expectedVersion)
		}
		c, err := p.Apply(rec.Campaign)
		if err != nil {
			return err
		}
		c.Version = rec.Campaign.Version + 1
		c.StartsAt, c.EndsAt = c.StartsAt.UTC(), c.EndsAt.UTC()
		res, err := tx.ExecContext(ctx, `UPDATE campaigns SET name = ?, benefit_type = ?, benefit_amount = ?, segment = ?,
			new_user_days = ?, cost_points = ?, starts_at = ?, ends_at = ?, stock = ?, per_user_limit = ?, status = ?, version = ?
			WHERE id = ? AND version = ?`,
			c.Name, string(c.Benefit.Type), c.Benefit.Amount, string(c.Audience.Segment), nullableDays(c.Audience), c.CostPoints,
			c.StartsAt, c.EndsAt, c.Stock, c.PerUserLimit, string(c.Status), c.Version, id, expectedVersion)
		if err != nil {
			return classify(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return domain.Refuse(domain.CodeVersionMismatch, "campaign %s changed concurrently", id)
		}
		entry, err = insertOutbox(ctx, tx, "campaign", id, c.Version)
		updated = c
		return err
	})
	return updated, entry, err
}

// Campaign reads one campaign.
func (s *Store) Campaign(ctx context.Context, id string) (CampaignRecord, error) {
	rec, err := scanCampaign(s.db.QueryRowContext(ctx, "SELECT "+campaignColumns+" FROM campaigns WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return CampaignRecord{}, domain.Refuse(domain.CodeCampaignNotFound, "no campaign %s", id)
	}
	return rec, classify(err)
}

func (s *Store) queryCampaigns(ctx context.Context, query string, args ...any) ([]CampaignRecord, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []CampaignRecord
	for rows.Next() {
		rec, err := scanCampaign(rows)
		if err != nil {
			return nil, classify(err)
		}
		out = append(out, rec)
	}
	return out, classify(rows.Err())
}

// Campaigns lists every campaign, newest first.
func (s *Store) Campaigns(ctx context.Context) ([]CampaignRecord, error) {
	return s.queryCampaigns(ctx, "SELECT "+campaignColumns+" FROM campaigns ORDER BY created_at DESC, id")
}

// LiveCampaigns lists campaigns that have not ended before now − grace, the ones the cache must hold.
func (s *Store) LiveCampaigns(ctx context.Context, now time.Time, grace time.Duration) ([]CampaignRecord, error) {
	return s.queryCampaigns(ctx, "SELECT "+campaignColumns+" FROM campaigns WHERE ends_at > ? ORDER BY id", now.Add(-grace).UTC())
}
