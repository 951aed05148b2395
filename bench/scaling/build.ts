import { existsSync } from 'node:fs';
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
  // The core's migrations and every module's, as the Dockerfile copies them.
  const modules = (await readdir(join(ROOT, 'modules'), { withFileTypes: true })).filter((d) =>
    d.isDirectory(),
  );
  const folders = [
    'shared/db/migrations',
    ...modules.map((d) => `modules/${d.name}/migrations`).filter((f) => existsSync(join(ROOT, f))),
  ];
  for (const folder of folders) {
    const target = join(outDir, folder);
    await mkdir(target, { recursive: true });
    for (const file of (await readdir(join(ROOT, folder))).filter((f) => f.endsWith('.sql'))) {
      await copyFile(join(ROOT, folder, file), join(target, file));
    }
  }
  return outDir;
}
