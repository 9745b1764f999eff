import { Controller, Delete, Get, Logger, Options, Param, Post, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Config } from '../../config/config.module';
import { PollError } from './poll-error';
import { PollService } from './poll.service';

/**
 * The long-polling endpoints (docs/protocol.md "Long polling"): HTTP in, PollService decides. Every
 * answer is JSON: an array of server frames (their texts joined as written), `{sid, frames}` for open,
 * or `{code, message}` with a 4xx/5xx status. Browsers on another origin get CORS headers when their
 * Origin is allowed (ALLOWED_ORIGINS, any when unset).
 */
/** The request as Express hands it over: the JSON body parser has run. */
type Request = IncomingMessage & { body?: unknown };
type Response = ServerResponse;

@ApiTags('long polling')
@ApiBearerAuth()
@ApiResponse({ status: 400, description: '{code: "bad_frame", message}: a malformed request or frame' })
@ApiResponse({ status: 401, description: '{code: "unauthorized", message}: no valid bearer token' })
@ApiResponse({
  status: 403,
  description: '{code: "forbidden", message}: origin not allowed, or not this user\'s session',
})
@ApiResponse({ status: 413, description: '{code: "too_large", message}: body over POLL_MAX_BODY_BYTES' })
@ApiResponse({ status: 429, description: '{code: "rate_limited", message}: too many requests or sessions' })
@ApiResponse({ status: 503, description: '{code: "unavailable", message}: draining or a dependency failing' })
@Controller('v1/poll')
export class PollController {
  private readonly logger = new Logger(PollController.name);
  private readonly origins: Set<string> | null;

  constructor(
    private readonly config: Config,
    private readonly polls: PollService,
  ) {
    const allowed = config.admission.allowedOrigins;
    this.origins = allowed && !allowed.includes('*') ? new Set(allowed.map(normalizeOrigin)) : null;
  }

  @ApiOperation({ summary: 'CORS preflight for browsers on another origin' })
  @ApiResponse({ status: 204, description: 'allowed: CORS headers set' })
  @Options(['open', ':sid'])
  preflight(@Req() req: Request, @Res() res: Response): void {
    if (!this.cors(req, res)) return;
    res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
    res.setHeader('access-control-allow-headers', 'authorization, content-type');
    res.setHeader('access-control-max-age', '600');
    reply(res, 204, null);
  }

  @ApiOperation({
    summary: 'Open a long-polling session (docs/protocol.md "Long polling")',
    description:
      'Body `{"last_msg_id"?: "<cursor>"}`; answers the session id and the first frames (`welcome`).',
  })
  @ApiResponse({ status: 200, description: '{sid, frames: [server frames]}' })
  @Post('open')
  async open(@Req() req: Request, @Res() res: Response): Promise<void> {
    await this.answer(req, res, async () => {
      const body = (req.body ?? {}) as unknown;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new PollError('bad_frame', 'the body must be a JSON object {"last_msg_id"?: "<cursor>"}');
      }
      // `{"last_msg_id"}`, or the hello frame itself (`{"type":"hello","payload":{"last_msg_id"}}`).
      const hello = body as { type?: unknown; payload?: { last_msg_id?: unknown }; last_msg_id?: unknown };
      const last = hello.type === 'hello' ? hello.payload?.last_msg_id : hello.last_msg_id;
      if (last !== undefined && (typeof last !== 'string' || last.length === 0 || last.length > 128)) {
        throw new PollError('bad_frame', 'last_msg_id must be a cursor of 1..128 characters');
      }
      const opened = await this.polls.open(req, last);
      return `{"sid":${JSON.stringify(opened.sid)},"frames":[${opened.frames.join(',')}]}`;
    });
  }

  @ApiOperation({
    summary: 'Poll: held until there are frames to send or the poll timeout passes',
    description:
      'Answers a JSON array of server frames (possibly empty); `cursor` is the last msg_id the client has.',
  })
  @ApiParam({ name: 'sid', description: 'session id from open' })
  @ApiQuery({ name: 'cursor', required: false, description: 'the last delivery the client processed' })
  @ApiResponse({ status: 200, description: '[server frames]' })
  @ApiResponse({ status: 404, description: '{code: "not_found", message}: unknown session id' })
  @ApiResponse({
    status: 410,
    description: '{code: "session_expired", message}: the session ended; open a new one from the cursor',
  })
  @Get(':sid')
  async poll(@Req() req: Request, @Res() res: Response, @Param('sid') sid: string): Promise<void> {
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    await this.answer(req, res, async () => {
      const frames = await this.polls.poll(req, sid, queryOf(req).get('cursor') ?? undefined, gone.signal);
      return `[${frames.join(',')}]`;
    });
  }

  @ApiOperation({
    summary: 'Send client frames',
    description:
      'Body: a JSON array of client frames; answers their acks and errors as an array of server frames.',
  })
  @ApiParam({ name: 'sid', description: 'session id from open' })
  @ApiQuery({ name: 'cursor', required: false, description: 'the last delivery the client processed' })
  @ApiResponse({ status: 200, description: '[server frames: acks and errors]' })
  @ApiResponse({ status: 404, description: '{code: "not_found", message}: unknown session id' })
  @ApiResponse({ status: 410, description: '{code: "session_expired", message}: the session ended' })
  @Post(':sid')
  async post(@Req() req: Request, @Res() res: Response, @Param('sid') sid: string): Promise<void> {
    await this.answer(req, res, async () => {
      const frames = await this.polls.post(req, sid, queryOf(req).get('cursor') ?? undefined, req.body);
      return `[${frames.join(',')}]`;
    });
  }

  @ApiOperation({ summary: 'End a long-polling session (the user goes offline once no connection remains)' })
  @ApiParam({ name: 'sid', description: 'session id from open' })
  @ApiResponse({ status: 204, description: 'ended' })
  @Delete(':sid')
  async end(@Req() req: Request, @Res() res: Response, @Param('sid') sid: string): Promise<void> {
    await this.answer(req, res, async () => {
      await this.polls.end(req, sid);
      return null;
    });
  }

  /** The checks every request passes, then `work`; its JSON (or 204 for null) or its PollError. */
  private async answer(req: Request, res: Response, work: () => Promise<string | null>): Promise<void> {
    res.setHeader('cache-control', 'no-store');
    try {
      if (!this.cors(req, res)) return;
      if (this.config.auth.mode !== 'dev' && queryOf(req).has('token')) {
        throw new PollError(
          'bad_frame',
          'send the token as "Authorization: Bearer <token>", never in the URL',
        );
      }
      // Without a Content-Length (chunked), the parsed body is measured instead.
      const declared = req.headers['content-length'];
      const length =
        declared !== undefined
          ? Number(declared)
          : req.body === undefined
            ? 0
            : Buffer.byteLength(JSON.stringify(req.body) ?? '');
      if (length > this.config.poll.maxBodyBytes) {
        throw new PollError(
          'too_large',
          `request body is larger than ${this.config.poll.maxBodyBytes} bytes`,
        );
      }
      const json = await work();
      if (res.writableEnded || res.destroyed) return;
      reply(res, json === null ? 204 : 200, json);
    } catch (err) {
      if (res.writableEnded || res.destroyed) return;
      if (err instanceof PollError) {
        reply(res, err.status, JSON.stringify({ code: err.code, message: err.message }));
        return;
      }
      this.logger.error(`long-polling request failed: ${(err as Error).stack ?? String(err)}`);
      reply(res, 503, '{"code":"unavailable","message":"internal error, retry"}');
    }
  }

  /** CORS for an allowed Origin; 403 (answered here, false returned) for one that is not allowed. */
  private cors(req: Request, res: Response): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (this.origins && !this.origins.has(normalizeOrigin(origin))) {
      reply(res, 403, '{"code":"forbidden","message":"origin not allowed"}');
      return false;
    }
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
    return true;
  }
}

function normalizeOrigin(origin: string): string {
  return origin.trim().replace(/\/+$/, '').toLowerCase();
}

function queryOf(req: IncomingMessage): URLSearchParams {
  return new URL(req.url ?? '/', 'http://localhost').searchParams;
}

function reply(res: ServerResponse, status: number, json: string | null): void {
  res.statusCode = status;
  if (json === null) {
    res.end();
    return;
  }
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(json));
  res.end(json);
}
