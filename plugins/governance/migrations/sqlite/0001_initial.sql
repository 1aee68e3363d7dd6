-- Keys, teams, the change sequence every process polls, spend records, daily rollups and
-- budget windows. Times are UNIX seconds (UTC); money is USD as a double.
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('seq', 0);
CREATE TABLE teams (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, budget_usd REAL, budget_period TEXT,
  metadata TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL,
  deleted_at REAL, seq INTEGER NOT NULL
);
CREATE INDEX teams_seq ON teams (seq);
CREATE TABLE keys (
  id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, hint TEXT NOT NULL, name TEXT NOT NULL,
  team_id TEXT, models TEXT NOT NULL DEFAULT '[]', rate_limit TEXT, budget_usd REAL, budget_period TEXT,
  expires_at REAL, metadata TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL,
  revoked_at REAL, seq INTEGER NOT NULL
);
CREATE INDEX keys_seq ON keys (seq);
CREATE TABLE spend_log (
  request_id TEXT NOT NULL, key_id TEXT NOT NULL, team_id TEXT NOT NULL, provider TEXT NOT NULL,
  model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  cached_input_tokens INTEGER NOT NULL, cost_usd REAL, status INTEGER NOT NULL, latency_ms REAL NOT NULL,
  ts REAL NOT NULL
);
CREATE INDEX spend_log_ts ON spend_log (ts);
CREATE TABLE usage_daily (
  day TEXT NOT NULL, key_id TEXT NOT NULL, team_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
  requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  cached_input_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, unpriced INTEGER NOT NULL,
  PRIMARY KEY (day, key_id, team_id, provider, model)
);
CREATE TABLE budget_usage (
  scope TEXT NOT NULL, id TEXT NOT NULL, bucket TEXT NOT NULL, cost_usd REAL NOT NULL, updated_at REAL NOT NULL,
  PRIMARY KEY (scope, id, bucket)
);
CREATE INDEX budget_usage_updated ON budget_usage (updated_at)
