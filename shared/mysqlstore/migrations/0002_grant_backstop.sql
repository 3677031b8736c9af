-- Sessions of the timer's grant backstop: a consumer group of its own on the grants topic, whose
-- messages a session holds invisible while it writes them. A session that never finished (its instance
-- died) may still hold some until hold_until; a drain trusts "the group is empty" only after that.
CREATE TABLE IF NOT EXISTS grant_backstop_runs (
  id          BIGINT      NOT NULL AUTO_INCREMENT,
  kind        VARCHAR(16) NOT NULL,
  started_at  DATETIME(6) NOT NULL,
  hold_until  DATETIME(6) NOT NULL,
  finished_at DATETIME(6) NULL,
  PRIMARY KEY (id),
  KEY grant_backstop_unfinished (finished_at, hold_until),
  KEY grant_backstop_kind (kind, finished_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
