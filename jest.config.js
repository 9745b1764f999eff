/** One jest run: unit specs next to the code, e2e/engine/cluster suites under test/, the SDK's tests. */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.test.json', isolatedModules: true }];
const base = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': tsJest },
  moduleFileExtensions: ['ts', 'js', 'json'],
};

module.exports = {
  projects: [
    {
      ...base,
      displayName: 'unit',
      testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/packages/client/test/**/*.spec.ts'],
    },
    { ...base, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'] },
    {
      ...base,
      displayName: 'engines',
      testMatch: ['<rootDir>/test/engines/**/*.spec.ts'],
      globalSetup: '<rootDir>/test/support/infra.global-setup.ts',
    },
    {
      ...base,
      displayName: 'cluster',
      testMatch: ['<rootDir>/test/cluster/**/*.spec.ts'],
      globalSetup: '<rootDir>/test/support/infra.global-setup.ts',
    },
  ],
};
