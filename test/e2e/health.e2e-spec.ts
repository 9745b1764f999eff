/**
 * /health/ready (embedded engine): this node's own fault (draining) is 503 at once; a shared dependency
 * only counts once it has failed continuously for READY_DEPENDENCY_GRACE_MS, and until then it is
 * reported down in a 200 body. The memory bus stands in for any dependency (setAvailable(false)).
 */
import { MessageBus } from '../../src/bus/message-bus';
import { MemoryBusDriver } from '../../src/bus/drivers/memory-bus.driver';
import { NodeStatus } from '../../src/health/node-status';
import { startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

interface ReadyBody {
  status: string;
  details?: Record<string, { status: string; failing_for_ms?: number; grace_ms?: number; message?: string }>;
  message?: { status: string; details: Record<string, { status: string; message?: string }> };
}

async function ready(t: TestApp): Promise<{ status: number; body: ReadyBody }> {
  const res = await fetch(`${t.http}/health/ready`);
  return { status: res.status, body: (await res.json()) as ReadyBody };
}

/** terminus puts its 503 result in the body as is; our own 503 (draining) too. */
const detailsOf = (body: ReadyBody) => body.details ?? body.message?.details ?? {};

describe('/health/ready with a long dependency grace', () => {
  let t: TestApp;
  let bus: MemoryBusDriver;
  beforeAll(async () => {
    t = await startTestApp({ READY_DEPENDENCY_GRACE_MS: '60000' });
    bus = t.app.get(MessageBus) as MemoryBusDriver;
  });
  afterAll(() => t.close());
  afterEach(() => bus.setAvailable(true));

  it('is 200 with every dependency up', async () => {
    const { status, body } = await ready(t);
    expect(status).toBe(200);
    expect(Object.keys(detailsOf(body)).sort()).toEqual([
      'bus',
      'channels',
      'directory',
      'outbox',
      'sessions',
    ]);
    expect(Object.values(detailsOf(body)).every((d) => d.status === 'up')).toBe(true);
  });

  it('/health answers as /health/ready (the design card names /health)', async () => {
    const res = await fetch(`${t.http}/health`);
    expect(res.status).toBe(200);
    expect(Object.keys(detailsOf((await res.json()) as ReadyBody)).sort()).toEqual([
      'bus',
      'channels',
      'directory',
      'outbox',
      'sessions',
    ]);
  });

  it('stays 200 while a dependency fails within the grace, reporting it down in the body', async () => {
    expect((await ready(t)).status).toBe(200); // the bus has answered once: a failure now is a blip
    bus.setAvailable(false);
    for (let i = 0; i < 3; i++) {
      const { status, body } = await ready(t);
      expect(status).toBe(200);
      expect(body.status).toBe('ok');
      expect(detailsOf(body).bus).toMatchObject({
        status: 'down',
        message: 'memory bus unavailable',
        grace_ms: 60_000,
      });
      expect(detailsOf(body).sessions.status).toBe('up');
    }
    bus.setAvailable(true);
    expect(detailsOf((await ready(t)).body).bus.status).toBe('up');
  });

  it('is 503 at once while the node drains, whatever its dependencies', async () => {
    const t2 = await startTestApp({ READY_DEPENDENCY_GRACE_MS: '60000' });
    try {
      expect((await ready(t2)).status).toBe(200);
      t2.app.get(NodeStatus).startDraining();
      const { status, body } = await ready(t2);
      expect(status).toBe(503);
      expect(JSON.stringify(body)).toContain('draining');
      expect((await fetch(`${t2.http}/health/live`)).status).toBe(200);
    } finally {
      await t2.close();
    }
  });
});

describe('/health/ready with a short dependency grace', () => {
  const GRACE = 300;
  let t: TestApp;
  let bus: MemoryBusDriver;
  beforeAll(async () => {
    t = await startTestApp({ READY_DEPENDENCY_GRACE_MS: String(GRACE) });
    bus = t.app.get(MessageBus) as MemoryBusDriver;
  });
  afterAll(() => t.close());
  afterEach(() => bus.setAvailable(true));

  it('turns 503 once the dependency has failed for the grace period, and 200 as soon as it answers', async () => {
    expect((await ready(t)).status).toBe(200);
    bus.setAvailable(false);
    const failedAt = Date.now();
    expect((await ready(t)).status).toBe(200); // first failure seen: within the grace
    let down: Awaited<ReturnType<typeof ready>> | undefined;
    await waitFor(async () => (down = await ready(t)).status === 503, 5_000, 'readiness to turn 503');
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(GRACE);
    expect(detailsOf(down!.body).bus.status).toBe('down');
    expect(detailsOf(down!.body).outbox.status).toBe('up');

    bus.setAvailable(true);
    expect((await ready(t)).status).toBe(200);
    // A success reset the clock: a new failure starts a new grace period.
    bus.setAvailable(false);
    expect((await ready(t)).status).toBe(200);
  });

  it('a dependency this node has never reached counts at once, whatever the grace', async () => {
    const fresh = await startTestApp({ READY_DEPENDENCY_GRACE_MS: '60000' });
    const freshBus = fresh.app.get(MessageBus) as MemoryBusDriver;
    try {
      freshBus.setAvailable(false);
      expect((await ready(fresh)).status).toBe(503);
      freshBus.setAvailable(true);
      expect((await ready(fresh)).status).toBe(200);
      freshBus.setAvailable(false);
      expect((await ready(fresh)).status).toBe(200); // now it is a blip
    } finally {
      freshBus.setAvailable(true);
      await fresh.close();
    }
  });

  it('with READY_DEPENDENCY_GRACE_MS=0 a failing dependency is 503 at once', async () => {
    const t0 = await startTestApp({ READY_DEPENDENCY_GRACE_MS: '0' });
    try {
      (t0.app.get(MessageBus) as MemoryBusDriver).setAvailable(false);
      const { status, body } = await ready(t0);
      expect(status).toBe(503);
      expect(detailsOf(body).bus.status).toBe('down');
    } finally {
      (t0.app.get(MessageBus) as MemoryBusDriver).setAvailable(true);
      await t0.close();
    }
  });
});
