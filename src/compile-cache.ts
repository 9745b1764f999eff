import { enableCompileCache } from 'node:module';

/**
 * Imported first by main.ts, so every module loaded after it comes from V8's on-disk code cache:
 * a warm start skips compiling Nest, kafkajs, TypeORM and the rest, which is most of a cold boot
 * (docs/architecture.md "Lifecycle"). The directory is NODE_COMPILE_CACHE when set, else the OS temp
 * directory; an unwritable one only costs the speed-up (Node reports it and carries on).
 */
enableCompileCache();
