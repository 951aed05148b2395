-- Validates 0003's CHECK: a scan under SHARE UPDATE EXCLUSIVE, which lets reads and writes go on.
SET LOCAL lock_timeout = '5s';
ALTER TABLE refunds VALIDATE CONSTRAINT refunds_status_check;
