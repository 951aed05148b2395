-- The operators' console reads an order's story: its events in the outbox by aggregate (order) id.
-- Without this index that read scans the retained outbox (OUTBOX_RETENTION_HOURS of every order).
CREATE INDEX outbox_aggregate ON outbox (aggregate_id, id);
