-- Retention prunes find their old rows by index instead of scanning the tables.
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX dead_letters_handled ON dead_letters (resolved_at) WHERE status <> 'pending';
