-- Outbox pages keep half their room free (fillfactor 50). Every outbox row is updated exactly once
-- after its insert (the relay's mark: published_at, sometimes quarantined_at), so the free half holds
-- each row's new version on the row's own page. An update that stays on its page is WAL-logged as the
-- bytes that changed (prefix and suffix shared with the old version are left out of the record: about
-- 80 bytes instead of the whole ~900-byte row with its envelope), and without the extra row-lock
-- record an update writes when it has to move the row to another page. Measured by
-- bench/cost/wal-breakdown.ts: about 880 bytes of WAL less per order. The table grows little (about
-- 13% in that bench): with full pages, every updated version already moved to a new page.
-- The update is still not HOT (outbox_unpublished and outbox_published_at index published_at), so
-- the indexes still get a new entry per update.
-- Live databases: only the storage parameter changes (a SHARE UPDATE EXCLUSIVE lock: reads and writes
-- go on); pages written from now on keep the room, existing ones are left as they are.
SET LOCAL lock_timeout = '5s';
ALTER TABLE outbox SET (fillfactor = 50);
