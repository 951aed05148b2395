-- The relays are woken by a NOTIFY the writers send after their commit (workers/outbox/wake.ts), no
-- longer by this trigger: PostgreSQL serializes the commits of all notifying transactions on one
-- database-wide lock held until the commit is flushed, so the trigger made every order write wait for
-- the one before it (40% of the backends' time with four worker replicas). Same channel, so relays of
-- either version hear writers of either version during a rolling upgrade.
DROP TRIGGER outbox_inserted ON outbox;
DROP FUNCTION outbox_notify();
