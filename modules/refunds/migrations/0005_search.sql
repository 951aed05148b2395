-- Indexes of the command search (shared/search), in its order (requested_at DESC, refund_id): see
-- modules/orders/migrations/0007_search.sql for the choice and for running them CONCURRENTLY
-- beforehand on a large live table (every migration file runs in one transaction).
SET LOCAL lock_timeout = '5s';
CREATE INDEX IF NOT EXISTS refunds_search_requested ON refunds (requested_at DESC, refund_id);
CREATE INDEX IF NOT EXISTS refunds_search_status ON refunds (status, requested_at DESC, refund_id);
CREATE INDEX IF NOT EXISTS refunds_search_order ON refunds (order_id, requested_at DESC, refund_id);
CREATE INDEX IF NOT EXISTS refunds_search_tenant ON refunds (tenant, requested_at DESC, refund_id);
CREATE INDEX IF NOT EXISTS refunds_search_api_key ON refunds ((split_part(tenant, '/', 1)), requested_at DESC, refund_id);
CREATE INDEX IF NOT EXISTS refunds_search_correlation ON refunds (correlation_id);
