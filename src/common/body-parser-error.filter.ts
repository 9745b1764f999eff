import { ArgumentsHost, Catch, HttpException } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import type { ServerResponse } from 'node:http';

/** What body-parser throws (http-errors): a client error with a status, safe to show (`expose`). */
interface BodyParserError {
  type: string;
  status: number;
  expose: boolean;
  message: string;
  limit?: number;
}

function isBodyParserError(e: unknown): e is BodyParserError {
  const err = e as Partial<BodyParserError> | null;
  return (
    typeof err?.type === 'string' &&
    typeof err.status === 'number' &&
    err.status >= 400 &&
    err.status < 500 &&
    err.expose === true
  );
}

/**
 * Answers body-parser's client errors (413 too large, 415 charset, 400 aborted) as the HTTP errors they
 * are, without the stack-trace log Nest writes for unknown exceptions: an oversized body is the
 * client's mistake (or an attack), not ours, and must not flood the log.
 */
@Catch()
export class BodyParserErrorFilter extends BaseExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): void {
    // Nest 12's Express adapter already wraps http-errors in an HttpException (the original is its cause).
    const raw = exception instanceof HttpException ? exception.cause : exception;
    if (!isBodyParserError(raw)) return super.catch(exception, host);
    const message =
      raw.type === 'entity.too.large' && raw.limit !== undefined
        ? `request body is larger than ${raw.limit} bytes`
        : raw.message;
    // Long polling answers every error as {code, message} with the protocol's codes.
    const req = host.switchToHttp().getRequest<{ url?: string }>();
    if (req.url?.startsWith('/v1/poll')) {
      const res = host.switchToHttp().getResponse<ServerResponse>();
      const code = raw.status === 413 ? 'too_large' : 'bad_frame';
      res.statusCode = raw.status === 413 ? 413 : 400;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end(JSON.stringify({ code, message }));
      return;
    }
    // `code` as in the backend APIs' errors ({code, message}); `statusCode` as Nest's own bodies.
    const code = raw.status === 413 ? 'too_large' : 'bad_request';
    super.catch(new HttpException({ code, message, statusCode: raw.status }, raw.status), host);
  }
}
