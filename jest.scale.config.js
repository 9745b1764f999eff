/**
 * `npm run test:scale`: relay on replicated engines (3-broker Kafka, Redis Cluster) brought up on
 * loopback by scripts/infra.sh (kafka-cluster / redis-cluster). Not part of `npm test`; see README.
 */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.test.json' }];
const base = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': tsJest },
  moduleFileExtensions: ['ts', 'js', 'json'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    '^@relay/client$': '<rootDir>/packages/client/src/index.ts',
  },
  globalSetup: '<rootDir>/test/scale/scale.global-setup.ts',
  testTimeout: 120_000,
};

module.exports = {
  projects: [
    {
      // The Redis port contracts, unchanged, on the Redis Cluster.
      ...base,
      displayName: 'scale-contracts',
      testMatch: ['<rootDir>/test/contracts/*.redis.spec.ts'],
      setupFiles: ['<rootDir>/test/scale/redis-cluster-contracts.setup.ts'],
    },
    // Real processes (dist/main.js) on the clusters, with broker kills and master failovers.
    { ...base, displayName: 'scale', testMatch: ['<rootDir>/test/scale/**/*.spec.ts'] },
  ],
};
