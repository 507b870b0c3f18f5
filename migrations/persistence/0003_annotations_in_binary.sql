-- Annotation values that contain U+0000, which JSONB cannot hold: their
-- exact bytes, base64, by key (`annotations` holds the others). Kubernetes
-- accepts U+0000 in annotation values (never in labels or keys), and one
-- such value must not keep a mirror's other rows from being written.
ALTER TABLE configmaps ADD COLUMN IF NOT EXISTS annotations_in_binary JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE configmap_revisions ADD COLUMN IF NOT EXISTS annotations_in_binary JSONB;
