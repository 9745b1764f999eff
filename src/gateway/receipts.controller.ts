import {
  BadRequestException,
  Controller,
  ForbiddenException,
  Get,
  NotFoundException,
  Param,
  Req,
  ServiceUnavailableException,
  UnauthorizedException,
} from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { IncomingMessage } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { Config } from '../config/config.module';
import { ConversationDirectory } from '../directory/conversation-directory';
import { OutboxStore } from '../outbox/outbox.store';
import { ID_PATTERN, ID_PATTERN_SOURCE } from '../protocol/frames';
import { MarkerStore } from '../receipts/marker.store';
import { AuthService } from './auth.service';

/** The markers listed at most (the largest MAX_CONVERSATION_MEMBERS). */
const MAX_LISTED = 100_000;

export interface ReceiptsResponse {
  conversation_id: string;
  /** The conversation's highest message seq. */
  head: number;
  /** Current members that have a marker, by user id; members without one have delivered = read = 0. */
  receipts: { user_id: string; delivered: number; read: number }[];
}

/**
 * `GET /v1/conversations/:id/receipts` (protocol v1.1): the current delivered/read markers, for
 * backends and for clients of large conversations, which do not get every receipt pushed.
 *
 * Who may read them: in dev auth mode anyone (like the directory API); otherwise the admin key
 * (`Authorization: Bearer <ADMIN_API_KEY>`) or a member's token (`Authorization: Bearer <jwt>` or
 * `?token=<jwt>`, verified like the WebSocket's). Errors are `{code, message}`: 400 bad id, 401 no
 * or bad credentials, 403 not a member, 404 no such conversation, 503 directory/store down.
 */
@Controller('v1/conversations')
export class ReceiptsController {
  constructor(
    private readonly config: Config,
    private readonly auth: AuthService,
    private readonly directory: ConversationDirectory,
    private readonly outbox: OutboxStore,
    private readonly markers: MarkerStore,
  ) {}

  @ApiTags('receipts')
  @ApiBearerAuth()
  @ApiOperation({
    summary: "A conversation's delivered/read markers (protocol v1.1 receipts)",
    description: "Admin key, or a member's JWT; anyone in dev auth mode.",
  })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiResponse({
    status: 200,
    description:
      '{conversation_id, head, receipts: [{user_id, delivered, read}]} (members without a marker are 0/0)',
  })
  @ApiResponse({ status: 400, description: '{code, message}: bad conversation id' })
  @ApiResponse({ status: 401, description: '{code, message}: no or bad credentials' })
  @ApiResponse({ status: 403, description: '{code, message}: not a member' })
  @ApiResponse({ status: 404, description: '{code, message}: no such conversation' })
  @ApiResponse({ status: 503, description: '{code, message}: directory or store unavailable' })
  @Get(':id/receipts')
  async receipts(@Param('id') id: string, @Req() req: IncomingMessage): Promise<ReceiptsResponse> {
    if (!ID_PATTERN.test(id)) {
      throw new BadRequestException({
        code: 'bad_request',
        message: `conversation id must match ${ID_PATTERN_SOURCE}`,
      });
    }
    const caller = await this.caller(req);
    let members: string[] | null | undefined;
    try {
      members = (await this.directory.members([id])).get(id);
    } catch {
      throw new ServiceUnavailableException({ code: 'unavailable', message: 'directory unavailable' });
    }
    if (!members)
      throw new NotFoundException({ code: 'not_found', message: `conversation ${id} does not exist` });
    if (caller !== 'admin' && !members.includes(caller)) {
      throw new ForbiddenException({
        code: 'forbidden',
        message: `you are not a member of conversation ${id}`,
      });
    }
    try {
      const [markers, heads] = await Promise.all([
        this.markers.list(id, MAX_LISTED),
        this.outbox.conversationHeads([id]),
      ]);
      const current = new Set(members);
      return {
        conversation_id: id,
        head: heads.get(id) ?? 0,
        receipts: markers
          .filter((m) => current.has(m.userId))
          .map((m) => ({ user_id: m.userId, delivered: m.delivered, read: m.read })),
      };
    } catch {
      throw new ServiceUnavailableException({ code: 'unavailable', message: 'receipt store unavailable' });
    }
  }

  /** 'admin', or the member the token names. */
  private async caller(req: IncomingMessage): Promise<string> {
    if (this.config.auth.mode === 'dev') return 'admin';
    const header = req.headers.authorization ?? '';
    const expected = Buffer.from(`Bearer ${this.config.auth.adminApiKey ?? ''}`);
    const given = Buffer.from(header);
    if (
      this.config.auth.adminApiKey &&
      given.length === expected.length &&
      timingSafeEqual(given, expected)
    ) {
      return 'admin';
    }
    const bearer = /^Bearer (.+)$/.exec(header)?.[1];
    // The WebSocket's verification reads `?token=`: hand it the bearer token the same way.
    const probe = bearer ? ({ url: `/?token=${encodeURIComponent(bearer)}` } as IncomingMessage) : req;
    const result = await this.auth.authenticate(probe);
    if ('failure' in result) {
      throw new UnauthorizedException({
        code: 'unauthorized',
        message: 'admin API key or member token required',
      });
    }
    return result.principal.userId;
  }
}
