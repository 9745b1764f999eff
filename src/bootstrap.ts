import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { AppModule } from './app.module';
import { MessageBus } from './bus/message-bus';
import { createAppLogger } from './common/app-logger';
import { startTracing } from './common/tracing';
import { BodyParserErrorFilter } from './common/body-parser-error.filter';
import { AppConfig } from './config/app-config';
import { directoryBodyLimit } from './directory/directory.controller';
import { GatewayServer } from './gateway/gateway.server';
import { AdmissionService } from './gateway/admission.service';
import { RelayWsAdapter } from './gateway/relay-ws.adapter';
import { BusTransport } from './router/bus.transport';
import { setupApiDocs } from './openapi/api-docs';

/** Builds and starts the app on config.host:config.port (0 picks a free port). Used by main and tests. */
export async function startApp(config: AppConfig): Promise<INestApplication> {
  // Before the first span could be started; AppModule flushes and stops it on shutdown.
  if (config.otel) await startTracing({ endpoint: config.otel.endpoint });
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    logger: createAppLogger(config),
    // A dependency that is down at startup must surface as an error the caller can report, not SIGABRT.
    abortOnError: false,
  });
  // Sized for a directory PUT of MAX_CONVERSATION_MEMBERS members; anything bigger gets 413 unparsed.
  app.useBodyParser('json', { limit: directoryBodyLimit(config.directory.maxMembers) });
  app.useGlobalFilters(new BodyParserErrorFilter(app.getHttpAdapter()));
  app.enableShutdownHooks();
  // The roles are the two edges: the WebSocket adapter exists only with the gateway role, the bus
  // consumer only with the router role. Either way /health and /metrics stay on the HTTP port.
  if (config.roles.has('gateway')) {
    // Frames above 2x the limit are cut by ws itself before being buffered; between 1x and 2x the
    // gateway can still tell the client why (`too_large`) before closing with 1009.
    const maxPayload = config.gateway.maxFrameBytes * 2;
    app.useWebSocketAdapter(
      new RelayWsAdapter(app, app.get(AdmissionService), app.get(GatewayServer), maxPayload),
    );
  }
  if (config.roles.has('router')) {
    app.connectMicroservice<AsyncMicroserviceOptions>(
      { inject: [MessageBus], useFactory: (bus: MessageBus) => ({ strategy: new BusTransport(bus) }) },
      { inheritAppConfig: true },
    );
  }
  // /openapi.json and /docs (API_DOCS=false: off).
  setupApiDocs(app, config);
  await app.listen(config.port, config.host);
  // After listen: router replicas serve /health while they join the consumer group.
  await app.startAllMicroservices();
  return app;
}
