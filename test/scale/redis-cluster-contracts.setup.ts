import { REDIS_CLUSTER_NODES } from './scale-env';

// The Redis port contracts (test/contracts/*.redis.spec.ts) read it in contractRedis(): same suites, on the cluster.
process.env.RELAY_TEST_REDIS_CLUSTER_NODES = REDIS_CLUSTER_NODES.join(',');
