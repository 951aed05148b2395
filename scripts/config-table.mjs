// Regenerates every generated reference from its one source: `.env.example` and docs/configuration.md
// from shared/config/config.ts, docs/metrics.md from the metrics registry, docs/problems.md from the
// problem codes (scripts/lib/references.ts). Run `node scripts/config-table.mjs` after changing any of
// them; test/unit/references.test.ts fails while a committed file differs from what this writes.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register();
process.chdir(fileURLToPath(new URL('..', import.meta.url)));
const { generatedFiles } = await import('./lib/references.ts');
for (const [file, text] of Object.entries(await generatedFiles())) {
  writeFileSync(file, text);
  console.log(`wrote ${file}`);
}
