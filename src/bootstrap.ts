import 'reflect-metadata';
import { INestApplication, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module';
import { BodyParserErrorFilter } from './common/body-parser-error.filter';
import { AppConfig } from './config/app-config';
import { directoryBodyLimit } from './directory/directory.controller';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** Builds and starts the app on config.host:config.port (0 picks a free port). Used by main and tests. */
export async function startApp(config: AppConfig): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    logger: LEVELS.slice(0, LEVELS.indexOf(config.logLevel) + 1),
    // A dependency that is down at startup must surface as an error the caller can report, not SIGABRT.
    abortOnError: false,
  });
  // Sized for a directory PUT of MAX_CONVERSATION_MEMBERS members; anything bigger gets 413 unparsed.
  app.useBodyParser('json', { limit: directoryBodyLimit(config.directory.maxMembers) });
  app.useGlobalFilters(new BodyParserErrorFilter(app.getHttpAdapter()));
  app.enableShutdownHooks();
  // Router-only processes still serve /health and /metrics on the HTTP port, but never upgrade to WebSocket.
  await app.listen(config.port, config.host);
  return app;
}
