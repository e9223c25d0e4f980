-- wa-watchdog schema, version 2: idempotent restart intents.
--
-- A restart intent whose write timed out may still be committed later by
-- the writer connection; the daemon then retries the same intent. Each intent
-- carries a key generated once per intent, and the unique index turns the
-- retry into a no-op that returns the row already written, so one restart
-- never has two remediation rows. Rows from before this version have no key.
ALTER TABLE remediations ADD COLUMN intent_key TEXT;
CREATE UNIQUE INDEX remediations_intent_key ON remediations (intent_key)
    WHERE intent_key IS NOT NULL;
