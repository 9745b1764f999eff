// Temporary, package-local jest config until the root config includes this package.
// To merge into the root: add a project with these same `transform` and `moduleNameMapper` entries
// and testMatch `<rootDir>/packages/client/test/**/*.spec.ts`.
/** @type {import('jest').Config} */
module.exports = {
  displayName: 'client',
  rootDir: __dirname,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }],
  },
  // The sources import siblings as './x.js' (required for the ESM build to run in Node);
  // under ts-jest those resolve to the .ts files.
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
};
