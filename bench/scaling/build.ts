import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

/**
 * Compiles the platform as the container image does (Dockerfile: `tsc -p tsconfig.build.json`, the SQL
 * migrations beside the output) into `.cache/bench-dist`, so replicas start like pods — `node
 * dist/workers/main.js`, not tsx transpiling the sources on a 0.2-core quota, which took ~9 s per start.
 * @returns the directory holding `api/main.js`, `workers/main.js`, …
 */
export async function compileForReplicas(): Promise<string> {
  const outDir = join(ROOT, '.cache/bench-dist');
  await run(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', outDir],
    {
      cwd: ROOT,
    },
  );
  const migrations = join(ROOT, 'shared/db/migrations');
  const target = join(outDir, 'shared/db/migrations');
  await mkdir(target, { recursive: true });
  for (const file of (await readdir(migrations)).filter((f) => f.endsWith('.sql'))) {
    await copyFile(join(migrations, file), join(target, file));
  }
  return outDir;
}
