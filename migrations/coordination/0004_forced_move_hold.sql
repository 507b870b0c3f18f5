-- A forced move (the old owner never acknowledged its drain, though it is
-- alive) is not the new owner's to write before active_from: until then the
-- old owner may still act on its last read of the assignments, which it
-- trusts for a bounded time only (Timing::ownership_valid).
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS active_from TIMESTAMPTZ;
