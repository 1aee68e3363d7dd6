-- Keys, teams, the change sequence every process polls, spend records, daily rollups and
-- budget windows. Times are UNIX seconds (UTC); money is USD as a double.
CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (name, value) VALUES ('seq', 0);
CREATE TABLE teams (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, budget_usd DOUBLE PRECISION, budget_period TEXT,
  metadata TEXT NOT NULL DEFAULT '{}', created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
  deleted_at DOUBLE PRECISION, seq BIGINT NOT NULL
);
CREATE INDEX teams_seq ON teams (seq);
CREATE TABLE keys (
  id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, hint TEXT NOT NULL, name TEXT NOT NULL,
  team_id TEXT, models TEXT NOT NULL DEFAULT '[]', rate_limit TEXT, budget_usd DOUBLE PRECISION, budget_period TEXT,
  expires_at DOUBLE PRECISION, metadata TEXT NOT NULL DEFAULT '{}', created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
  revoked_at DOUBLE PRECISION, seq BIGINT NOT NULL
);
CREATE INDEX keys_seq ON keys (seq);
CREATE TABLE spend_log (
  request_id TEXT NOT NULL, key_id TEXT NOT NULL, team_id TEXT NOT NULL, provider TEXT NOT NULL,
  model TEXT NOT NULL, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
  cached_input_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION, status BIGINT NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
  ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX spend_log_ts ON spend_log (ts);
CREATE TABLE usage_daily (
  day TEXT NOT NULL, key_id TEXT NOT NULL, team_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
  requests BIGINT NOT NULL, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
  cached_input_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, unpriced BIGINT NOT NULL,
  PRIMARY KEY (day, key_id, team_id, provider, model)
);
CREATE TABLE budget_usage (
  scope TEXT NOT NULL, id TEXT NOT NULL, bucket TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (scope, id, bucket)
);
CREATE INDEX budget_usage_updated ON budget_usage (updated_at)
