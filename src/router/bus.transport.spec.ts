import { INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchHandler, BusBatch, MessageBus } from '../bus/message-bus';
import { BusTransport } from './bus.transport';
import { RouterController } from './router.controller';
import { RouterService } from './router.service';

/** A bus that only records the handler the transport registers, so a test can call it like a driver. */
class CapturingBus extends MessageBus {
  handler: BatchHandler | null = null;
  stopped = 0;
  async publish(): Promise<void> {}
  async publishRecord(): Promise<void> {}
  async consumeAsGroup(): Promise<{ stop(): Promise<void> }> {
    return { stop: async () => undefined };
  }
  async publishReceipt(): Promise<void> {}
  async consume(handler: BatchHandler): Promise<void> {
    this.handler = handler;
  }
  async stopConsuming(): Promise<void> {
    this.stopped++;
  }
  async deadLetter(): Promise<void> {}
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}

describe('BusTransport + RouterController (@nestjs/microservices)', () => {
  const bus = new CapturingBus();
  const routed: BusBatch[] = [];
  let fail: Error | null = null;
  let app: INestApplication;

  @Module({
    controllers: [RouterController],
    providers: [
      { provide: MessageBus, useValue: bus },
      {
        provide: RouterService,
        useValue: {
          route: async (batch: BusBatch) => {
            if (fail) throw fail;
            routed.push(batch);
          },
        },
      },
    ],
  })
  class TestRouterModule {}

  beforeAll(async () => {
    app = await NestFactory.create(TestRouterModule, { logger: false });
    app.connectMicroservice<AsyncMicroserviceOptions>(
      { inject: [MessageBus], useFactory: (b: MessageBus) => ({ strategy: new BusTransport(b) }) },
      { inheritAppConfig: true },
    );
    await app.init();
    await app.startAllMicroservices();
  });
  afterAll(() => app.close());

  it('hands each bus batch to the @EventPattern handler and resolves once it is routed', async () => {
    const batch: BusBatch = { partition: 3, messages: [] };
    await bus.handler!(batch);
    expect(routed).toEqual([batch]);
  });

  it('lets the original error reach the bus driver (its retry and its log), not a generic RPC error', async () => {
    fail = new Error('outbox down: ECONNREFUSED');
    await expect(bus.handler!({ partition: 0, messages: [] })).rejects.toBe(fail);
    fail = null;
  });

  it('stops consuming when the app closes', async () => {
    const local = await NestFactory.create(TestRouterModule, { logger: false });
    local.connectMicroservice<AsyncMicroserviceOptions>({
      inject: [MessageBus],
      useFactory: (b: MessageBus) => ({ strategy: new BusTransport(b) }),
    });
    await local.init();
    await local.startAllMicroservices();
    const before = bus.stopped;
    await local.close();
    expect(bus.stopped).toBe(before + 1);
  });
});
