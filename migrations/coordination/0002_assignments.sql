-- Which member reconciles which ConfigMirror. A move from a live member is
-- two steps: the coordinator marks it 'draining' towards next_member; the
-- old owner finishes its in-flight reconcile and hands it over. Every change
-- bumps the assignment's epoch.
CREATE TABLE IF NOT EXISTS assignments (
    mirror_uid          TEXT PRIMARY KEY,
    mirror_namespace    TEXT NOT NULL,
    mirror_name         TEXT NOT NULL,
    member              TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining')),
    next_member         TEXT,
    epoch               BIGINT NOT NULL DEFAULT 1,
    coordinator_epoch   BIGINT NOT NULL,
    changed_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((state = 'draining') = (next_member IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS assignments_by_member ON assignments (member);
CREATE INDEX IF NOT EXISTS assignments_by_next_member ON assignments (next_member) WHERE next_member IS NOT NULL;

-- Every ownership change, for audits and for the handover metrics.
CREATE TABLE IF NOT EXISTS assignment_history (
    id                  BIGSERIAL PRIMARY KEY,
    mirror_uid          TEXT NOT NULL,
    member              TEXT NOT NULL,
    state               TEXT NOT NULL,
    next_member         TEXT,
    epoch               BIGINT NOT NULL,
    coordinator_epoch   BIGINT NOT NULL,
    reason              TEXT NOT NULL,
    recorded_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS assignment_history_by_mirror ON assignment_history (mirror_uid, id);
