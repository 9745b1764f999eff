/** One jest run: unit specs next to the code, e2e/engine/cluster suites under test/, the SDK's tests. */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.test.json' }];
const base = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': tsJest },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // The SDK's sources import siblings as './x.js' (required by Node's ESM loader in its build).
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    '^@relay/client$': '<rootDir>/packages/client/src/index.ts',
  },
};
// Suites that need Kafka, Redis and MariaDB: the global setup brings them up (or fails the run).
const withInfra = {
  ...base,
  globalSetup: '<rootDir>/test/support/infra.global-setup.ts',
  testTimeout: 60_000,
};

module.exports = {
  projects: [
    {
      ...base,
      displayName: 'unit',
      testMatch: [
        '<rootDir>/src/**/*.spec.ts',
        '<rootDir>/packages/client/test/**/*.spec.ts',
        '<rootDir>/test/lint/**/*.spec.ts',
        // Port contracts (test/contracts/*.contract.ts) on the memory drivers.
        '<rootDir>/test/contracts/*.memory.spec.ts',
      ],
    },
    // In-process apps, child processes (CLIs) and a browser: Jest's 5 s default is too tight on a busy 2-core CI box.
    { ...base, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'], testTimeout: 30_000 },
    {
      // The same end-to-end suites, on the production engines in-process.
      ...withInfra,
      displayName: 'e2e-production',
      testMatch: [
        '<rootDir>/test/e2e/messaging.e2e-spec.ts',
        '<rootDir>/test/e2e/auth.e2e-spec.ts',
        '<rootDir>/test/e2e/sdk.e2e-spec.ts',
        '<rootDir>/test/e2e/hostile.e2e-spec.ts',
        '<rootDir>/test/e2e/order.e2e-spec.ts',
        '<rootDir>/test/e2e/quarantine.e2e-spec.ts',
        '<rootDir>/test/e2e/console-api.e2e-spec.ts',
        // Backends in the loop (issue 13): publish/membership APIs, event stream, webhooks.
        '<rootDir>/test/e2e/backends.e2e-spec.ts',
        '<rootDir>/test/e2e/longpoll.e2e-spec.ts',
        '<rootDir>/test/e2e/sdk-longpoll.e2e-spec.ts',
        '<rootDir>/test/e2e/live-ephemeral.e2e-spec.ts',
        '<rootDir>/test/e2e/receipts.e2e-spec.ts',
      ],
      setupFiles: ['<rootDir>/test/support/production-engine.setup.ts'],
    },
    {
      ...withInfra,
      displayName: 'engines',
      testMatch: [
        '<rootDir>/test/engines/**/*.spec.ts',
        // The same port contracts on the production drivers.
        '<rootDir>/test/contracts/*.{kafka,redis,mysql,sharded}.spec.ts',
      ],
    },
    { ...withInfra, displayName: 'cluster', testMatch: ['<rootDir>/test/cluster/**/*.spec.ts'] },
  ],
};
