import {
  BadRequestException,
  Body,
  CanActivate,
  Controller,
  Delete,
  ExecutionContext,
  Get,
  HttpCode,
  Injectable,
  NotFoundException,
  Param,
  Put,
  UseGuards,
  ValidationPipe,
} from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiProperty, ApiResponse, ApiTags } from '@nestjs/swagger';
import { apiError, ApiErrorBody } from '../common/api-error';
import { MembershipEvents } from './membership-events';
import { ArrayMaxSize, IsArray, IsString, Matches } from 'class-validator';
import { timingSafeEqual } from 'node:crypto';
import { Config } from '../config/config.module';
import { DirectoryStore } from './conversation-directory';
import { MembershipCheck } from './membership-check';
import { ID_PATTERN, ID_PATTERN_SOURCE } from '../protocol/frames';

/** Conversation and user ids (the same charset as the WebSocket protocol's ids). */

/**
 * The request body a PUT may carry: room for MAX_CONVERSATION_MEMBERS ids of the longest kind
 * (128 chars, quoted, a separator, some whitespace) plus the envelope. Bigger bodies are refused
 * with 413 before they are parsed.
 */
export function directoryBodyLimit(maxMembers: number): number {
  return maxMembers * 160 + 4096;
}

export class PutConversationDto {
  @ApiProperty({
    type: [String],
    description: 'the whole member list (replaces the current one)',
    example: ['alice', 'bob'],
  })
  @IsArray()
  @ArrayMaxSize(100_000) // the largest MAX_CONVERSATION_MEMBERS; the configured one is checked below
  @IsString({ each: true })
  @Matches(ID_PATTERN, { each: true, message: `each member must match ${ID_PATTERN_SOURCE}` })
  members!: string[];
}

/** Open in dev auth mode; otherwise `Authorization: Bearer <ADMIN_API_KEY>`. */
@Injectable()
export class AdminKeyGuard implements CanActivate {
  constructor(private readonly config: Config) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.config.auth.mode === 'dev') return true;
    const header = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>()
      .headers.authorization;
    const expected = Buffer.from(`Bearer ${this.config.auth.adminApiKey ?? ''}`);
    const given = Buffer.from(header ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw apiError(401, 'unauthorized', 'admin API key required');
    }
    return true;
  }
}

const validId = new ValidationPipe({ whitelist: true, forbidNonWhitelisted: false });

export class ConversationBody {
  @ApiProperty({ example: 'room-1' })
  id!: string;
  @ApiProperty({ type: [String], example: ['alice', 'bob'] })
  members!: string[];
}

@ApiTags('directory')
@ApiBearerAuth()
@ApiResponse({
  status: 401,
  description: 'admin API key missing or wrong (outside dev auth)',
  type: ApiErrorBody,
})
@Controller('v1/conversations')
@UseGuards(AdminKeyGuard)
export class DirectoryController {
  constructor(
    private readonly store: DirectoryStore,
    private readonly config: Config,
    private readonly events: MembershipEvents,
    private readonly membership: MembershipCheck,
  ) {}

  @Put(':id')
  @ApiOperation({
    summary: 'Create a conversation or replace its member list',
    description: 'Writes a `membership` record (op `replaced`) to the event stream.',
  })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiResponse({ status: 200, type: ConversationBody })
  @ApiResponse({ status: 400, description: 'invalid ids, or more than MAX_CONVERSATION_MEMBERS' })
  async put(@Param('id') id: string, @Body(validId) dto: PutConversationDto) {
    checkId(id);
    const max = this.config.directory.maxMembers;
    if (dto.members.length > max) {
      throw new BadRequestException(
        `members lists ${dto.members.length} ids; a conversation has at most ${max} (MAX_CONVERSATION_MEMBERS)`,
      );
    }
    await changeMembership(this.membership, id, () => this.store.put(id, dto.members));
    const members = [...new Set(dto.members)];
    await this.recordChange(id, 'replaced', { member_count: members.length });
    return { id, members };
  }

  @Get(':id')
  @ApiOperation({ summary: 'A conversation and its whole member list (use .../members to page)' })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiResponse({ status: 200, type: ConversationBody })
  @ApiResponse({ status: 404, description: 'no such conversation' })
  async get(@Param('id') id: string) {
    const members = (await this.store.get([checkId(id)])).get(id);
    if (!members) throw new NotFoundException(`conversation ${id} not found`);
    return { id, members };
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({
    summary: 'Delete a conversation',
    description: 'Writes a `membership` record (op `deleted`) to the event stream.',
  })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiResponse({ status: 204, description: 'deleted' })
  @ApiResponse({ status: 404, description: 'no such conversation' })
  async delete(@Param('id') id: string): Promise<void> {
    const deleted = await changeMembership(this.membership, checkId(id), () => this.store.delete(id));
    if (!deleted) throw new NotFoundException(`conversation ${id} not found`);
    await this.recordChange(id, 'deleted');
  }

  private recordChange(id: string, op: 'replaced' | 'deleted', detail = {}): Promise<void> {
    return recordMembershipChange(this.events, id, op, detail);
  }
}

/**
 * Runs a change of the built-in store, then makes the next membership check on every node see the store
 * as it is now (MembershipCheck.changed), before the API answers: also when the change failed or changed
 * nothing, since it may have committed, or be the retry of a change whose invalidation failed. A failed
 * invalidation answers 503; the caller retries the (idempotent) request.
 */
export async function changeMembership<T>(
  membership: MembershipCheck,
  id: string,
  change: () => Promise<T>,
): Promise<T> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, value: await change() };
  } catch (error) {
    outcome = { ok: false, error };
  }
  try {
    await membership.changed(id);
  } catch {
    throw apiError(
      503,
      'unavailable',
      'the membership cache could not be updated after the change; retry the request (it is idempotent)',
    );
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/**
 * The change is made; its stream record is written before answering. If that fails the caller gets
 * 503 and retries the (idempotent) request, which writes the record then.
 */
export async function recordMembershipChange(
  events: MembershipEvents,
  id: string,
  op: Parameters<MembershipEvents['changed']>[1],
  detail: Parameters<MembershipEvents['changed']>[2] = {},
): Promise<void> {
  try {
    await events.changed(id, op, detail);
  } catch {
    throw apiError(
      503,
      'unavailable',
      'the change is made but its event could not be written to the stream; retry the request (it is idempotent)',
    );
  }
}

export function checkId(id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new BadRequestException(`conversation id must match ${ID_PATTERN_SOURCE}`);
  }
  return id;
}
