// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.cache/', '.scratch/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/api/**', '**/workers/**', '**/dashboard/**'],
              message: 'shared/ must not import from api/, workers/ or dashboard/',
            },
          ],
        },
      ],
    },
  },
  // api/, workers/ and dashboard/ meet only through queues, the bus and the database: none imports
  // another (each deploys and scales on its own). main.ts, tests, bench and scripts may wire them all.
  ...[
    // A module's worker side never loads in the API, nor its HTTP side in workers.
    ['api', ['workers', 'dashboard', 'modules/[^/]+/worker']],
    ['workers', ['api', 'dashboard', 'modules/[^/]+/api']],
    ['dashboard', ['api', 'workers']],
    // A module's HTTP side runs in the API, its worker side in workers: each keeps to its own process.
    ['modules/*/api', ['workers', 'dashboard']],
    ['modules/*/worker', ['api', 'dashboard']],
  ].map(([folder, others]) => ({
    files: [`${folder}/**`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              // Relative paths only: packages such as @bull-board/api are not our api/.
              regex: `^(\\.\\.?/)+(${others.join('|')})/`,
              message: `${folder}/ must not import from ${others.join('/ or ')}/: they meet only through queues, the bus and the database`,
            },
          ],
        },
      ],
    },
  })),
  {
    // shared/modules/module.ts is the contract between the core and a module: it names the types of both sides.
    files: ['main.ts', 'test/**', 'bench/**', 'scripts/**', 'shared/modules/module.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
