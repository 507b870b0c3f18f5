-- The coordinator's epoch: bumped by each newly elected coordinator. Every
-- coordinator write checks it (and holds it FOR SHARE for the statement), so
-- a deposed coordinator's writes change nothing.
CREATE TABLE IF NOT EXISTS coordinator_epochs (
    id          SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    epoch       BIGINT NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The coordinator renews this each round, conditional on its epoch:
    -- a deposed one's renewal changes no row (and so it learns it).
    renewed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
