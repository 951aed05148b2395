-- Validates 0005's CHECK: a scan under SHARE UPDATE EXCLUSIVE, which lets reads and writes go on.
SET LOCAL lock_timeout = '5s';
ALTER TABLE batch_items VALIDATE CONSTRAINT batch_items_outcome_check;
