import { join } from 'node:path';
import { ESLint } from 'eslint';

/**
 * The import-boundary and promise rules of eslint.config.mjs bite: each forbidden import is
 * reported and its allowed neighbour is not. Code is linted in memory under a fake (or real) path,
 * so the globs of the real config decide which rules apply.
 */
const ROOT = join(__dirname, '..', '..');
const LAYERING = 'no-restricted-imports';
const DRIVERS = '@typescript-eslint/no-restricted-imports';

jest.setTimeout(60_000);

// Boundaries need no type information: parse without a program, run only the two import rules.
const boundaries = new ESLint({
  cwd: ROOT,
  overrideConfig: { languageOptions: { parserOptions: { project: false } } },
  ruleFilter: ({ ruleId }) => ruleId === LAYERING || ruleId === DRIVERS,
});

/** The rule ids reported for each line of `code`, linted as if it were the file at `path`. */
async function reported(path: string, code: string): Promise<(string | null)[][]> {
  const [result] = await boundaries.lintText(code, { filePath: join(ROOT, path) });
  const fatal = result.messages.filter((m) => m.fatal);
  if (fatal.length > 0) throw new Error(`cannot lint ${path}: ${fatal[0].message}`);
  const lines = code.split('\n').map(() => [] as (string | null)[]);
  for (const m of result.messages) lines[m.line - 1].push(m.ruleId);
  return lines;
}

/** Expects `forbidden` to be reported by `rule` and `allowed` by nothing, in file `path`. */
async function check(path: string, rule: string, forbidden: string[], allowed: string[]): Promise<void> {
  const code = [...forbidden, ...allowed].join('\n');
  const lines = await reported(path, code);
  expect({ path, forbidden: lines.slice(0, forbidden.length) }).toEqual({
    path,
    forbidden: forbidden.map(() => [rule]),
  });
  expect({ path, allowed: lines.slice(forbidden.length) }).toEqual({ path, allowed: allowed.map(() => []) });
}

describe('layering: ports and shared code never import the gateway or the router', () => {
  it.each([
    ['src/bus/fake.ts', '../'],
    ['src/bus/drivers/fake.ts', '../../'],
    ['src/session/fake.ts', '../'],
    ['src/outbox/fake.ts', '../'],
    ['src/directory/fake.ts', '../'],
    ['src/redis/fake.ts', '../'],
    ['src/database/migrations/fake.ts', '../../'],
    ['src/config/fake.ts', '../'],
    ['src/common/fake.ts', '../'],
    ['src/protocol/fake.ts', '../'],
    ['src/health/fake.ts', '../'],
    ['src/metrics/fake.ts', '../'],
  ])('%s', async (path, up) => {
    await check(
      path,
      LAYERING,
      [
        `import { GatewayServer } from '${up}gateway/gateway.server';`,
        `import type { Connection } from '${up}gateway/connection';`,
        `export { RouterService } from '${up}router/router.service';`,
        `import './${up}router/router.module';`,
      ],
      [
        `import { MessageBus } from '${up}bus/message-bus';`,
        `import { OutboxStore } from '${up}outbox/outbox.store';`,
        `import { Envelope } from '${up}protocol/envelope';`,
        `import { WebSocketGateway } from '@nestjs/websockets';`,
      ],
    );
  });
});

describe('layering: gateway and router never import each other', () => {
  it('gateway -> router is reported; gateway -> ports is fine', async () => {
    await check(
      'src/gateway/fake.ts',
      LAYERING,
      [`import { RouterService } from '../router/router.service';`],
      [
        `import { MessageBus } from '../bus/message-bus';`,
        `import { SendDedupe } from './dedupe/send-dedupe';`,
        `import { Connection } from './connection';`,
      ],
    );
    await check(
      'src/gateway/dedupe/fake.ts',
      LAYERING,
      [`import { RouterService } from '../../router/router.service';`],
      [`import { RedisConnections } from '../../redis/redis.module';`],
    );
  });

  it('router -> gateway is reported; router -> ports is fine', async () => {
    await check(
      'src/router/fake.ts',
      LAYERING,
      [`import { Connection } from '../gateway/connection';`],
      [
        `import { OutboxStore } from '../outbox/outbox.store';`,
        `import { RouterService } from './router.service';`,
      ],
    );
  });

  it('bootstrap.ts and app.module.ts compose the two', async () => {
    const both = [
      `import { GatewayModule } from './gateway/gateway.module';`,
      `import { RouterModule } from './router/router.module';`,
    ];
    await check('src/bootstrap.ts', LAYERING, [], both);
    await check('src/app.module.ts', LAYERING, [], both);
  });
});

describe('layering: the debug console may read the gateway; nothing imports the console', () => {
  it.each([
    ['src/gateway/fake.ts', '../'],
    ['src/router/fake.ts', '../'],
    ['src/session/fake.ts', '../'],
    ['src/common/fake.ts', '../'],
    ['src/bus/drivers/fake.ts', '../../'],
  ])('%s -> console is reported', async (path, up) => {
    await check(path, LAYERING, [`import { TailStreams } from '${up}console/tail.streams';`], []);
  });

  it('console -> gateway and ports is fine', async () => {
    await check(
      'src/console/fake.ts',
      LAYERING,
      [],
      [
        `import { TailHub } from '../gateway/tail.hub';`,
        `import { SessionMap } from '../session/session-map';`,
        `import { TailStreams } from './tail.streams';`,
      ],
    );
  });
});

describe('layering: the SDK never imports the server', () => {
  it.each(['packages/client/src/fake.ts', 'packages/client/test/fake.spec.ts'])('%s', async (path) => {
    const own = path.includes('/src/') ? './' : '../src/';
    await check(
      path,
      LAYERING,
      [
        `import { ERROR_CODES } from '../../../src/protocol/frames';`,
        `import type { Envelope } from '../../../src/protocol/envelope';`,
        `import { MessageBus } from './../../../src/bus/message-bus';`,
      ],
      [`import { Backoff } from '${own}backoff';`, `import { parseServerFrame } from '${own}protocol';`],
    );
  });
});

describe('drivers: only module factories, tests and bench name a driver', () => {
  it('a service or port naming a driver is reported; the port is fine', async () => {
    await check(
      'src/router/fake.ts',
      DRIVERS,
      [
        `import { MemoryBusDriver } from '../bus/drivers/memory-bus.driver';`,
        `import type { KafkaBusConfig } from '../bus/drivers/kafka-bus.driver';`,
      ],
      [`import { MessageBus } from '../bus/message-bus';`],
    );
    await check(
      'src/gateway/fake.ts',
      DRIVERS,
      [`import { MemoryDedupeDriver } from './dedupe/memory-dedupe.driver';`],
      [`import { SendDedupe } from './dedupe/send-dedupe';`],
    );
    await check(
      'src/bus/message-bus.ts',
      DRIVERS,
      [`import { MemoryBusDriver } from './drivers/memory-bus.driver';`],
      [`import { IngressMessage } from '../protocol/envelope';`],
    );
    await check(
      'scripts/fake.ts',
      DRIVERS,
      [`import { MysqlOutboxDriver } from '../src/outbox/drivers/mysql-outbox.driver';`],
      [`import { renderEnvExample } from '../src/config/config-reference';`],
    );
  });

  it("a module factory builds its own module's drivers, not another module's", async () => {
    await check(
      'src/bus/bus.module-factory.ts',
      DRIVERS,
      [`import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';`],
      [
        `import { MemoryBusDriver } from './drivers/memory-bus.driver';`,
        `import { KafkaBusDriver } from './drivers/kafka-bus.driver';`,
      ],
    );
    await check(
      'src/gateway/dedupe/send-dedupe.module-factory.ts',
      DRIVERS,
      [`import { RedisSessionDriver } from '../../session/drivers/redis-session.driver';`],
      [`import { MemoryDedupeDriver } from './memory-dedupe.driver';`],
    );
  });

  it("a driver uses its siblings, not another module's drivers", async () => {
    await check(
      'src/bus/drivers/fake.ts',
      DRIVERS,
      [
        `import { MemorySessionDriver } from '../../session/drivers/memory-session.driver';`,
        `import { MysqlOutboxDriver } from '../../outbox/drivers/mysql-outbox.driver';`,
      ],
      [
        `import { ClientSlot } from './kafka-client-slot';`,
        `import { MemoryBusDriver } from './memory-bus.driver';`,
        `import { MessageBus } from '../message-bus';`,
      ],
    );
    await check(
      'src/gateway/dedupe/fake.driver.ts',
      DRIVERS,
      [
        `import { MemorySessionDriver } from '../../session/drivers/memory-session.driver';`,
        `import { Other } from '../../session/other/other.driver';`,
      ],
      [
        `import { MemoryDedupeDriver } from './memory-dedupe.driver';`,
        `import { SendDedupe } from './send-dedupe';`,
        `import { RedisConnections } from '../../redis/redis.module';`,
      ],
    );
    await check(
      'src/bus/drivers/kafka/fake.ts',
      DRIVERS,
      [`import { MemoryOutboxDriver } from '../../../outbox/drivers/memory-outbox.driver';`],
      [
        `import { KafkaBusDriver } from '../kafka-bus.driver';`,
        `import { nestLogCreator } from '../kafka-log';`,
      ],
    );
  });

  it.each([
    'src/router/fake.spec.ts',
    'test/e2e/fake.e2e-spec.ts',
    'test/engines/fake.spec.ts',
    'test/contracts/fake.contract.ts',
    'bench/fake.ts',
  ])('%s may build drivers', async (path) => {
    const src = path.startsWith('src/') ? '../' : path.split('/').length === 2 ? '../src/' : '../../src/';
    await check(
      path,
      DRIVERS,
      [],
      [
        `import { MemoryBusDriver } from '${src}bus/drivers/memory-bus.driver';`,
        `import { MemoryDirectoryStoreDriver } from '${src}directory/drivers/memory-directory-store.driver';`,
      ],
    );
  });
});

describe('promises (type-aware)', () => {
  it('reports a floating promise and an async callback where a void one is expected; `void` marks intent', async () => {
    // A file outside every tsconfig, typed by the project service's default project.
    const typed = new ESLint({
      cwd: ROOT,
      overrideConfig: {
        languageOptions: {
          parserOptions: {
            project: false,
            projectService: { allowDefaultProject: ['test/lint/*.fixture.ts'] },
          },
        },
      },
      ruleFilter: ({ ruleId }) => /^@typescript-eslint\/no-(floating|misused)-promises$/.test(ruleId),
    });
    const code = [
      'async function work(): Promise<void> {}',
      'work();',
      '[1].forEach(async () => { await work(); });',
      'void work();',
      'export const done = work().catch(() => undefined);',
    ].join('\n');
    const [result] = await typed.lintText(code, { filePath: join(ROOT, 'test/lint/promises.fixture.ts') });
    expect(result.messages.map((m) => [m.line, m.ruleId])).toEqual([
      [2, '@typescript-eslint/no-floating-promises'],
      [3, '@typescript-eslint/no-misused-promises'],
    ]);
  });
});
