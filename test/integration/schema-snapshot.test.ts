import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCHEMA_SNAPSHOT, snapshotSchema } from '../../scripts/lib/schema-dump.ts';
import { TEST_DATABASE_URL } from '../support/env.ts';

describe('the schema after every migration', () => {
  it('is test/fixtures/schema.sql (after a migration: npm run schema:snapshot, and commit the diff)', async () => {
    const dumped = await snapshotSchema(TEST_DATABASE_URL);
    expect(dumped).toContain('CREATE TABLE schema_migrations (');
    expect(dumped).not.toContain('schema_snapshot_');
    expect(dumped).toBe(readFileSync(SCHEMA_SNAPSHOT, 'utf8'));
  });
});
