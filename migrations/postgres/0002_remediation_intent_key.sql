-- wa-watchdog schema, version 2, PostgreSQL dialect: idempotent restart
-- intents (see migrations/0002_remediation_intent_key.sql for why).
ALTER TABLE remediations ADD COLUMN intent_key TEXT;
CREATE UNIQUE INDEX remediations_intent_key ON remediations (intent_key)
    WHERE intent_key IS NOT NULL;
