-- How many Redis buckets a campaign's stock is split into (domain.Campaign.Buckets), fixed at creation.
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS buckets INT NOT NULL DEFAULT 1;
