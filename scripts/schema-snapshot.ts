// `node --import tsx scripts/schema-snapshot.ts` (npm run schema:snapshot) migrates a fresh schema of
// DATABASE_URL (default: the test database), writes its dump to test/fixtures/schema.sql and drops it.
// Run it after adding a migration and commit the diff with the migration.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SCHEMA_SNAPSHOT, snapshotSchema } from './lib/schema-dump.ts';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
writeFileSync(SCHEMA_SNAPSHOT, await snapshotSchema(url));
console.log(`${fileURLToPath(SCHEMA_SNAPSHOT)} written`);
