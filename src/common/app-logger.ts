import { ConsoleLogger, LogLevel } from '@nestjs/common';
import { AppConfig } from '../config/app-config';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/**
 * Nest's own ConsoleLogger: one JSON object per line in production (`LOG_FORMAT=json`), coloured text
 * otherwise. Plain objects passed after the message (`logger.warn('...', { msg, conn })`) become
 * top-level JSON fields, so log search can find every line of one message or connection.
 * Token-like keys are masked wherever they appear, as a second line of defence: no code path passes
 * a token to the logger on purpose.
 */
export function createAppLogger(config: Pick<AppConfig, 'logLevel' | 'logFormat'>): ConsoleLogger {
  return new ConsoleLogger({
    logLevels: LEVELS.slice(0, LEVELS.indexOf(config.logLevel) + 1),
    json: config.logFormat === 'json',
    flattenParams: true,
    redact: ['token', 'access_token', 'authorization', 'password', 'secret', 'jwt'],
  });
}
