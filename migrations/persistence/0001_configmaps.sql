-- The Go reference operator's table, kept as it is (a database where the
-- reference already created it keeps its rows), plus what ConfigMirror adds.

CREATE TABLE IF NOT EXISTS configmaps (
    id                     SERIAL PRIMARY KEY,
    name                   VARCHAR(253) NOT NULL,
    namespace              VARCHAR(253) NOT NULL,
    data                   JSONB NOT NULL,
    labels                 JSONB,
    annotations            JSONB,
    configmirror_name      VARCHAR(253) NOT NULL,
    configmirror_namespace VARCHAR(253) NOT NULL,
    created_at             TIMESTAMP NOT NULL DEFAULT now(),
    updated_at             TIMESTAMP NOT NULL DEFAULT now(),
    UNIQUE (name, namespace, configmirror_namespace, configmirror_name)
);

-- binaryData as the API spells it: key -> base64.
ALTER TABLE configmaps ADD COLUMN IF NOT EXISTS binary_data JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE configmaps ADD COLUMN IF NOT EXISTS immutable BOOLEAN NOT NULL DEFAULT false;
-- Keys of `data` whose values contain U+0000, which JSONB cannot hold: their
-- exact bytes are in binary_data under the same key.
ALTER TABLE configmaps ADD COLUMN IF NOT EXISTS data_in_binary JSONB NOT NULL DEFAULT '[]'::jsonb;
-- Hash of data, binaryData, immutable, labels and annotations: a row is
-- written only when it changes. NULL on rows the reference wrote.
ALTER TABLE configmaps ADD COLUMN IF NOT EXISTS content_hash TEXT;
ALTER TABLE configmaps ADD COLUMN IF NOT EXISTS source_uid TEXT;

CREATE INDEX IF NOT EXISTS configmaps_by_mirror ON configmaps (configmirror_namespace, configmirror_name);
