-- Sharding: who is alive. Heartbeats use the database's clock (now()), never
-- a member's own. A member's name is its pod name (stable under a
-- StatefulSet); each process registers a new incarnation, so a restarted pod
-- takes its name back and a stale process with the same name is shut out.
CREATE TABLE IF NOT EXISTS members (
    name          TEXT PRIMARY KEY,
    incarnation   UUID NOT NULL,
    state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'leaving')),
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at       TIMESTAMPTZ
);
