import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// api/, workers/ and dashboard/ deploy and scale on their own and meet only through queues, the bus
// and the database: the lint config forbids each to import another (and shared/ to import any).
const root = new URL('../../', import.meta.url).pathname;
const eslint = new ESLint({ cwd: root });

async function restricted(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${root}${filePath}` });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('architecture boundaries (lint)', () => {
  it.each([
    ['api/probe.ts', '../workers/start.ts'],
    ['api/routes/probe.ts', '../../dashboard/app.ts'],
    ['workers/probe.ts', '../api/server.ts'],
    ['workers/orders/probe.ts', '../../dashboard/server.ts'],
    ['dashboard/probe.ts', '../api/app.ts'],
    ['dashboard/routes/probe.ts', '../../workers/start.ts'],
    ['shared/probe.ts', '../api/app.ts'],
    ['workers/probe.ts', '../modules/refunds/api/index.ts'],
    ['api/probe.ts', '../modules/refunds/worker/index.ts'],
    ['modules/refunds/api/probe.ts', '../../../workers/start.ts'],
    ['modules/refunds/worker/probe.ts', '../../../api/app.ts'],
  ])('%s may not import %s', async (file, target) => {
    expect(await restricted(file, `export * from '${target}';\n`)).toHaveLength(1);
  });

  it('allows shared/, packages named like our folders, and main.ts wiring everything', async () => {
    expect(await restricted('api/probe.ts', `export * from '../shared/config/config.ts';\n`)).toEqual([]);
    expect(await restricted('dashboard/probe.ts', `export * from '@bull-board/api';\n`)).toEqual([]);
    expect(
      await restricted('main.ts', `export * from './api/server.ts';\nexport * from './workers/start.ts';\n`),
    ).toEqual([]);
  });

  it('holds for the code as it is', async () => {
    const results = await eslint.lintFiles(['api', 'workers', 'dashboard', 'shared', 'modules']);
    const broken = results.flatMap((r) =>
      r.messages
        .filter((m) => m.ruleId === 'no-restricted-imports')
        .map((m) => `${r.filePath}: ${m.message}`),
    );
    expect(broken).toEqual([]);
  }, 60_000);
});
