-- The delivery core is generic: a dead letter names the subject its command or event concerns (an
-- order, a refund, whatever a module's command is about), not an order. Rolling upgrade: this release
-- writes both columns and reads subject_id; a replica still on the previous release writes only
-- order_id, which the trigger copies, and reads order_id, which this release keeps filling. A later
-- release drops order_id and the trigger. Every existing row keeps its value.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS subject_id text;
UPDATE dead_letters SET subject_id = order_id WHERE subject_id IS NULL AND order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS dead_letters_subject ON dead_letters (subject_id);

CREATE OR REPLACE FUNCTION dead_letters_subject_compat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.subject_id := COALESCE(NEW.subject_id, NEW.order_id);
  NEW.order_id := COALESCE(NEW.order_id, NEW.subject_id);
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS dead_letters_subject_compat ON dead_letters;
CREATE TRIGGER dead_letters_subject_compat BEFORE INSERT OR UPDATE ON dead_letters
  FOR EACH ROW EXECUTE FUNCTION dead_letters_subject_compat();
