-- Audit log of operator actions: who did what, to which target, when and from where.
-- Written by the dashboard (logins, dead-letter and Bull Board actions) and by the API (dead-letter actions).
CREATE TABLE audit_log (
  id          bigserial   PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text        NOT NULL,
  role        text,
  source      text        NOT NULL CHECK (source IN ('dashboard', 'api')),
  action      text        NOT NULL,
  target      text,
  detail      jsonb       NOT NULL DEFAULT '{}',
  ip          text,
  user_agent  text
);
CREATE INDEX audit_log_actor ON audit_log (actor, id DESC);
CREATE INDEX audit_log_action ON audit_log (action, id DESC);
CREATE INDEX audit_log_target ON audit_log (target, id DESC);
