-- Identifiers compare byte for byte (utf8mb4_bin): request ids "A" and "a" are different requests.
CREATE TABLE IF NOT EXISTS campaigns (
  id             VARCHAR(64)  NOT NULL,
  name           VARCHAR(200) NOT NULL,
  benefit_type   VARCHAR(16)  NOT NULL,
  benefit_amount BIGINT       NOT NULL,
  segment        VARCHAR(16)  NOT NULL,
  new_user_days  INT          NULL,
  cost_points    BIGINT       NOT NULL,
  mode           VARCHAR(8)   NOT NULL,
  starts_at      DATETIME(3)  NOT NULL,
  ends_at        DATETIME(3)  NOT NULL,
  stock          BIGINT       NOT NULL,
  per_user_limit BIGINT       NOT NULL,
  status         VARCHAR(8)   NOT NULL,
  version        BIGINT       NOT NULL,
  issued         BIGINT       NOT NULL DEFAULT 0,
  created_at     DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at     DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY campaigns_ends (ends_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS users (
  id              VARCHAR(64) NOT NULL,
  registered_at   DATETIME(3) NOT NULL,
  member          BOOLEAN     NOT NULL,
  points_credited BIGINT      NOT NULL DEFAULT 0,
  points_debited  BIGINT      NOT NULL DEFAULT 0,
  version         BIGINT      NOT NULL,
  created_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY users_registered (registered_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per credit (ref = the operator's request id) or debit (ref = the claim id): the unique key
-- is what makes each apply once.
CREATE TABLE IF NOT EXISTS points_entries (
  id         BIGINT      NOT NULL AUTO_INCREMENT,
  user_id    VARCHAR(64) NOT NULL,
  kind       VARCHAR(8)  NOT NULL,
  ref        VARCHAR(128) NOT NULL,
  amount     BIGINT      NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY points_once (user_id, kind, ref)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS outbox (
  id         BIGINT      NOT NULL AUTO_INCREMENT,
  entity     VARCHAR(16) NOT NULL,
  entity_id  VARCHAR(64) NOT NULL,
  version    BIGINT      NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  sent_at    DATETIME(3) NULL,
  PRIMARY KEY (id),
  KEY outbox_pending (sent_at, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS claims (
  id             VARCHAR(64)  NOT NULL,
  campaign_id    VARCHAR(64)  NOT NULL,
  user_id        VARCHAR(64)  NOT NULL,
  request_id     VARCHAR(128) NOT NULL,
  benefit_type   VARCHAR(16)  NOT NULL,
  benefit_amount BIGINT       NOT NULL,
  cost_points    BIGINT       NOT NULL,
  granted_at     DATETIME(3)  NOT NULL,
  recorded_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY claims_request (user_id, request_id),
  KEY claims_user_time (user_id, granted_at, id),
  KEY claims_campaign (campaign_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sync_failures (
  id         BIGINT       NOT NULL AUTO_INCREMENT,
  entity     VARCHAR(16)  NOT NULL,
  entity_id  VARCHAR(128) NOT NULL,
  version    BIGINT       NOT NULL DEFAULT 0,
  reason     TEXT         NOT NULL,
  payload    MEDIUMTEXT   NOT NULL,
  created_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY sync_failures_entity (entity, entity_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
