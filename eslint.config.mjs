import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Import boundaries: today's layering, written down so it cannot erode by accident.
 * Checked on the import specifier (relative paths; there are no path aliases), so each regex names
 * where a relative path lands. test/lint/boundaries.spec.ts proves every rule reports a forbidden
 * import and lets the allowed one through.
 *
 * Two independent dimensions, each on its own rule instance, because a later flat-config object
 * replaces (not merges) an earlier one's options for the same rule:
 * - layering (`no-restricted-imports`): which folders may import which;
 * - drivers (`@typescript-eslint/no-restricted-imports`): who may name a concrete driver.
 */
const PORTS = [
  'bus',
  'session',
  'outbox',
  'directory',
  'redis',
  'database',
  'config',
  'common',
  'protocol',
  'health',
  'metrics',
  'presence',
  'receipts',
];

/** A relative specifier from anywhere under src/ that lands in src/<dir> (`../x`, `../../x`, `./../x`). */
const into = (dir) => ({
  regex: `(^|/)\\.\\./${dir}(/|$)`,
  caseSensitive: true,
});
const layer = (dir, why) => ({ ...into(dir), message: `${why} (docs/architecture.md: imports go one way).` });

const layering = [
  {
    files: PORTS.map((p) => `src/${p}/**/*.ts`),
    patterns: [
      layer('gateway', 'Ports and shared code never import the gateway'),
      layer('router', 'Ports and shared code never import the router'),
      layer('console', 'Nothing imports the debug console (it is optional)'),
    ],
  },
  {
    // bootstrap.ts and app.module.ts (src/ root) compose the two and are not covered here.
    files: ['src/gateway/**/*.ts'],
    patterns: [
      layer('router', 'The gateway never imports the router; src/bootstrap.ts composes them'),
      // The console reads the gateway (its exports, the TailHub), never the other way.
      layer('console', 'Nothing imports the debug console (it is optional)'),
    ],
  },
  {
    files: ['src/router/**/*.ts'],
    patterns: [
      layer('gateway', 'The router never imports the gateway; src/bootstrap.ts composes them'),
      layer('console', 'Nothing imports the debug console (it is optional)'),
    ],
  },
  {
    // From packages/client/{src,test}/x.ts the server's src/ is three levels up (../src is the SDK's own).
    files: ['packages/client/**/*.ts'],
    patterns: [
      {
        regex: '(^|/)(\\.\\./){3,}src(/|$)',
        caseSensitive: true,
        message: 'The SDK never imports the server: share code through a workspace package.',
      },
    ],
  },
].map(({ files, patterns }) => ({ files, rules: { 'no-restricted-imports': ['error', { patterns }] } }));

const DRIVER_MESSAGE =
  'Drivers are chosen in *.module-factory.ts; everything else depends on the port (tests and bench may build drivers).';
const TESTS = [
  'test/**/*.ts',
  'bench/**/*.ts',
  'packages/*/test/**/*.ts',
  '**/*.spec.ts',
  '**/*.e2e-spec.ts',
];
const DRIVER_FILES = ['**/drivers/**/*.ts', '**/*.driver.ts'];
const FACTORIES = ['**/*.module-factory.ts'];

const drivers = [
  {
    // Anything that names a drivers/ folder or a *.driver file.
    files: ['**/*.ts'],
    ignores: [...TESTS, ...DRIVER_FILES, ...FACTORIES],
    patterns: [{ regex: '(^|/)drivers/|\\.driver$', caseSensitive: true, message: DRIVER_MESSAGE }],
  },
  {
    // A factory picks its own module's drivers (./drivers/..., ./x.driver), not another module's.
    files: FACTORIES,
    patterns: [
      {
        regex: '^\\.\\./.*((^|/)drivers/|\\.driver$)',
        caseSensitive: true,
        message: "A module factory builds its own module's drivers only.",
      },
    ],
  },
  {
    // A driver's files use each other (siblings), but not another module's drivers.
    files: DRIVER_FILES,
    ignores: TESTS,
    patterns: [
      {
        regex: '/drivers/|^\\.\\./.+/[^/]+\\.driver$',
        caseSensitive: true,
        message: "A driver never imports another module's driver.",
      },
    ],
  },
].map(({ files, ignores, patterns }) => ({
  files,
  ...(ignores ? { ignores } : {}),
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
}));

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'dist-bench/',
      'node_modules/',
      'packages/*/dist/',
      'coverage/',
      '**/*.js',
      '**/*.cjs',
      '**/*.mjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Type information for the promise rules: one program over everything tsconfig.test.json covers
    // (src, test, bench, scripts, the SDK); other workspaces bring their own tsconfig.json.
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        project: ['./tsconfig.test.json', './packages/*/tsconfig.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // A promise nobody awaits loses its rejection; mark intended fire-and-forget with `void`.
      '@typescript-eslint/no-floating-promises': 'error',
      // e.g. an async callback where a void one is expected (event listeners, forEach).
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'off',
      'no-console': ['error', { allow: ['error'] }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'packages/client/test/**/*.ts', 'src/**/*.spec.ts'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
  ...layering,
  ...drivers,
);
