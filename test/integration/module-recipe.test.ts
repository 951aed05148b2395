import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The module recipe (docs/modules.md), followed as a new author would: in a copy of the repository, run
// the recipe's commands as printed — they scaffold a third module, `invoices` — and the checks must pass
// there with no other file touched. `npm run check` runs as typecheck, the unit tests the registry drives,
// and lint and format checks of the files the recipe wrote (the rest of the unit suite and linting the
// whole tree again would prove nothing more: they cannot see the new module).

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODULE = 'invoices';

/** The shell commands between the recipe markers of docs/modules.md. */
function recipeCommands(): string[] {
  const doc = readFileSync(`${ROOT}docs/modules.md`, 'utf8');
  const block = /<!-- recipe:start[^>]*-->\s*```bash\n([\s\S]*?)```\s*<!-- recipe:end -->/.exec(doc);
  if (!block)
    throw new Error(
      'docs/modules.md: no ```bash block between <!-- recipe:start --> and <!-- recipe:end -->',
    );
  return block[1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** The repository's files as the working tree has them (tracked and new, not ignored), node_modules linked. */
function copyRepository(): { dir: string; files: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-recipe-'));
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  // Those deleted in the working tree stay out.
  const files = listed.stdout.split('\0').filter((f) => f && existsSync(`${ROOT}${f}`));
  for (const file of files) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(`${ROOT}${file}`, join(dir, file));
  }
  symlinkSync(`${ROOT}node_modules`, join(dir, 'node_modules'), 'dir');
  return { dir, files };
}

/** What the recipe may change besides the module's folder and its registry line: files rendered from the registry. */
const RENDERED = [
  '.env.example',
  'deploy/base/modules.yaml',
  'docker-compose.cluster.yml',
  'docker-compose.yml',
  'docs/configuration.md',
];

/** The environment of this process without what makes a child vitest think it runs inside this one. */
const childEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !k.startsWith('VITEST') && k !== 'NODE_OPTIONS' && k !== 'TEST',
  ),
);

function run(dir: string, command: string): { ok: boolean; output: string } {
  const res = spawnSync('bash', ['-c', command], {
    cwd: dir,
    encoding: 'utf8',
    env: childEnv,
    maxBuffer: 64 << 20,
  });
  return { ok: res.status === 0, output: `$ ${command}\n${res.stdout}${res.stderr}`.slice(-20_000) };
}

/** `npm run check`, on what the recipe changed (see the top of this file). */
const CHECK = [
  'npm run typecheck',
  `npx eslint modules/${MODULE} modules/registry.ts`,
  `npx prettier --check modules/${MODULE} modules/registry.ts docker-compose.yml docker-compose.cluster.yml deploy/base/modules.yaml`,
  `npx vitest run --project unit ${registryDrivenUnitTests().join(' ')}`,
];

/**
 * The unit tests whose outcome depends on which modules are registered (what the registry drives: scopes,
 * manifests, compose, configuration, references). The rest of the unit suite cannot see a new module
 * and already runs in the suite itself.
 */
function registryDrivenUnitTests(): string[] {
  const unit = (readdirSync(`${ROOT}test/unit`, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `test/unit/${f}`);
  const drivenBy =
    /modules\/registry|\bMODULES\b|modules\.yaml|docker-compose|config-table|loadConfig|EnvSchema/;
  return unit.filter((f) => drivenBy.test(readFileSync(`${ROOT}${f}`, 'utf8')));
}

describe('the module recipe (docs/modules.md), followed in a copy of the repository', () => {
  let dir: string | undefined;
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`scaffolds a third module, ${MODULE}, and the checks pass with nothing else edited`, () => {
    const commands = recipeCommands();
    expect(commands[0]).toBe(`npm run module:new -- ${MODULE}`);
    const copy = copyRepository();
    dir = copy.dir;
    for (const command of commands.flatMap((c) => (c === 'npm run check' ? CHECK : [c]))) {
      const { ok, output } = run(dir, command);
      expect(ok, output).toBe(true);
    }

    // Besides the module's own folder, only its registry line and what is rendered from the registry.
    const changed = copy.files.filter(
      (f) => !existsSync(join(dir!, f)) || !readFileSync(join(dir!, f)).equals(readFileSync(`${ROOT}${f}`)),
    );
    expect(changed.filter((f) => !RENDERED.includes(f) && f !== 'modules/registry.ts')).toEqual([]);
    expect(changed).toContain('modules/registry.ts');
    const known = new Set(copy.files);
    const created = (readdirSync(dir, { recursive: true }) as string[])
      .filter((f) => f !== 'node_modules' && !f.startsWith('node_modules/') && !known.has(f))
      .filter((f) => statSync(join(dir!, f)).isFile());
    expect(created.filter((f) => !f.startsWith(`modules/${MODULE}/`))).toEqual([]);
    expect(created).toContain(`modules/${MODULE}/module.ts`);

    // Registered once, rendered everywhere the registry drives, its routes under its own scopes.
    const read = (file: string) => readFileSync(join(dir!, file), 'utf8');
    expect(read('modules/registry.ts').match(new RegExp(`${MODULE}Module`, 'g'))).toHaveLength(2);
    expect(read('docker-compose.yml')).toContain(`WORKER_KINDS: ${MODULE}\n`);
    expect(read('docker-compose.cluster.yml')).toContain(`  worker-${MODULE}:\n`);
    expect(read('deploy/base/modules.yaml')).toContain(`/v1/scaling/${MODULE}`);
    const scopes = run(
      dir,
      `node --import tsx --input-type=module -e "const a = await import('./api/middleware/auth.ts'); const k = await import('./shared/security/api-keys.ts'); const r = await import('./modules/registry.ts'); console.log(JSON.stringify([a.requiredScope('POST', '/v1/${MODULE}'), a.requiredScope('GET', '/v1/${MODULE}/x'), k.knownScopes(r.MODULES)]))"`,
    );
    expect(scopes.ok, scopes.output).toBe(true);
    const [write, readScope, scopeNames] = JSON.parse(scopes.output.trim().split('\n').at(-1)!) as [
      string,
      string,
      string[],
    ];
    expect([write, readScope]).toEqual([`${MODULE}:write`, `${MODULE}:read`]);
    expect(scopeNames).toEqual(expect.arrayContaining([`${MODULE}:write`, `${MODULE}:read`]));
  }, 300_000);
});
