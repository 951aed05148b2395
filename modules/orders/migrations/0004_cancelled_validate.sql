-- Validates 0003's CHECK: a scan under SHARE UPDATE EXCLUSIVE, which lets reads and writes go on.
SET LOCAL lock_timeout = '5s';
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_check;
