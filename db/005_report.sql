-- 005: indexes for support and reporting (cutoff who and cutoff report read every person of a
-- campaign with their deliveries; cutoff user reads one person).
-- Each person's deliveries from this index alone: one probe a person instead of two.
CREATE INDEX delivery_person ON delivery (recipient_id, state, sent_at, updated_at, reason, kind);
-- Whether a person's address is suppressed, without building a temporary index each time.
CREATE INDEX suppression_email ON suppression (email);
