-- Fencing for sharded writers. Each row statement of a sharded member
-- carries the assignment epoch its reconcile began under and applies only
-- if no newer epoch has written this mirror's rows (the row is upserted in
-- the same statement, under its row lock): a member that lost a mirror
-- cannot overwrite its new owner's rows late, whatever its clock or its
-- network did. The new owner's first statement claims the mirror; it
-- sends every row then, so anything written before the claim is corrected.
CREATE TABLE IF NOT EXISTS mirror_write_epochs (
    mirror_uid             TEXT PRIMARY KEY,
    configmirror_namespace TEXT NOT NULL,
    configmirror_name      TEXT NOT NULL,
    epoch                  BIGINT NOT NULL,
    member                 TEXT NOT NULL,
    written_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
