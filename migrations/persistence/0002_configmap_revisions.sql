-- One row per change of a configmaps row: an audit history of every
-- replicated ConfigMap. No foreign key: the history outlives the row.

CREATE TABLE IF NOT EXISTS configmap_revisions (
    id                     BIGSERIAL PRIMARY KEY,
    configmap_id           INTEGER NOT NULL,
    name                   VARCHAR(253) NOT NULL,
    namespace              VARCHAR(253) NOT NULL,
    configmirror_name      VARCHAR(253) NOT NULL,
    configmirror_namespace VARCHAR(253) NOT NULL,
    operation              TEXT NOT NULL CHECK (operation IN ('created', 'updated', 'deleted')),
    content_hash           TEXT,
    source_uid             TEXT,
    -- The row as it became (for a deletion: as it was).
    data                   JSONB,
    binary_data            JSONB,
    data_in_binary         JSONB,
    immutable              BOOLEAN,
    labels                 JSONB,
    annotations            JSONB,
    recorded_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS configmap_revisions_by_configmap
    ON configmap_revisions (configmirror_namespace, configmirror_name, namespace, name, id);
CREATE INDEX IF NOT EXISTS configmap_revisions_by_time ON configmap_revisions (recorded_at);
