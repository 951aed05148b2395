-- Which API key accepted each order (the operators' console shows it in the order's story). Null for
-- orders decided before this column existed and for jobs a foreign producer enqueued directly.
ALTER TABLE orders ADD COLUMN accepted_by text;
