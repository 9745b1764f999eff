import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiOperation,
  ApiParam,
  ApiProperty,
  ApiPropertyOptional,
  ApiQuery,
  ApiResponse,
  ApiTags,
} from '@nestjs/swagger';
import { apiError, ApiErrorBody } from '../common/api-error';
import { Config } from '../config/config.module';
import { ID_PATTERN, ID_PATTERN_SOURCE } from '../protocol/frames';
import { DirectoryStore } from './conversation-directory';
import { AdminKeyGuard, changeMembership, recordMembershipChange } from './directory.controller';
import { MembershipCheck } from './membership-check';
import { MEMBERSHIP_RECORD_MAX_IDS, MembershipEvents } from './membership-events';

/** Ids per add/remove request: one membership record each. */
const MAX_IDS_PER_REQUEST = MEMBERSHIP_RECORD_MAX_IDS;
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

export class MembersBody {
  @ApiProperty({ type: [String], description: `1-${MAX_IDS_PER_REQUEST} user ids`, example: ['carol'] })
  members!: string[];
}

export class MembersChangeAnswer {
  @ApiProperty({ example: 'room-1' })
  id!: string;
  @ApiProperty({ description: 'ids actually added / removed by this request', example: 1 })
  changed!: number;
  @ApiProperty({ description: 'members after the change', example: 3 })
  member_count!: number;
}

export class MembersPageAnswer {
  @ApiProperty({ example: 'room-1' })
  id!: string;
  @ApiProperty({ type: [String], description: 'in id order (binary)', example: ['alice', 'bob'] })
  members!: string[];
  @ApiPropertyOptional({
    type: String,
    nullable: true,
    description: 'pass as `after` for the next page; null on the last',
    example: 'bob',
  })
  next!: string | null;
}

/**
 * Incremental membership of the built-in directory: add and remove without resending the list
 * (idempotent; concurrent changes never lose each other: the store adds and deletes rows, it never
 * rewrites the list), and paged listing. A change applies to the next message: the gateways' membership
 * sets are invalidated before the answer (changeMembership), and the routers drop their cached list when
 * they see the change's record. Each change is a `membership` record on the event stream.
 */
@ApiTags('directory')
@ApiBearerAuth()
@ApiResponse({
  status: 401,
  description: 'admin API key missing or wrong (outside dev auth)',
  type: ApiErrorBody,
})
@ApiResponse({ status: 400, description: 'invalid ids or paging parameters', type: ApiErrorBody })
@Controller('v1/conversations/:id/members')
@UseGuards(AdminKeyGuard)
export class MembersController {
  constructor(
    private readonly store: DirectoryStore,
    private readonly config: Config,
    private readonly events: MembershipEvents,
    private readonly membership: MembershipCheck,
  ) {}

  @Post()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Add members (creates the conversation if missing)',
    description:
      'Idempotent: ids already in are left as they are. Refused as a whole (400, code `too_many_members`) when the conversation would exceed MAX_CONVERSATION_MEMBERS.',
  })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiBody({ type: MembersBody })
  @ApiResponse({ status: 200, type: MembersChangeAnswer })
  @ApiResponse({ status: 503, description: 'store or stream unavailable: retry', type: ApiErrorBody })
  async add(@Param('id') id: string, @Body() body: unknown): Promise<MembersChangeAnswer> {
    const members = memberIds(body);
    const max = this.config.directory.maxMembers;
    const result = await changeMembership(this.membership, conversationId(id), () =>
      this.store.addMembers(id, members, max),
    );
    if (!result.ok) {
      throw apiError(
        400,
        'too_many_members',
        `conversation ${id} has ${result.count} members; adding these would exceed ${max} (MAX_CONVERSATION_MEMBERS)`,
      );
    }
    await recordMembershipChange(this.events, id, 'added', { members: [...new Set(members)] });
    return { id, changed: result.changed, member_count: result.count };
  }

  @Post('remove')
  @HttpCode(200)
  @ApiOperation({ summary: 'Remove members', description: 'Idempotent: ids that are not members are fine.' })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiBody({ type: MembersBody })
  @ApiResponse({ status: 200, type: MembersChangeAnswer })
  @ApiResponse({ status: 404, description: 'no such conversation', type: ApiErrorBody })
  async remove(@Param('id') id: string, @Body() body: unknown): Promise<MembersChangeAnswer> {
    return this.removeIds(id, memberIds(body));
  }

  @Delete(':userId')
  @HttpCode(200)
  @ApiOperation({ summary: 'Remove one member', description: 'Idempotent.' })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiParam({ name: 'userId', description: 'user id' })
  @ApiResponse({ status: 200, type: MembersChangeAnswer })
  @ApiResponse({ status: 404, description: 'no such conversation', type: ApiErrorBody })
  async removeOne(@Param('id') id: string, @Param('userId') userId: string): Promise<MembersChangeAnswer> {
    return this.removeIds(id, memberIds({ members: [userId] }));
  }

  @Get()
  @ApiOperation({ summary: 'List members, one page at a time (id order)' })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiQuery({ name: 'limit', required: false, description: `1-${MAX_PAGE}, default ${DEFAULT_PAGE}` })
  @ApiQuery({ name: 'after', required: false, description: 'the `next` of the previous page' })
  @ApiResponse({ status: 200, type: MembersPageAnswer })
  @ApiResponse({ status: 404, description: 'no such conversation', type: ApiErrorBody })
  async list(
    @Param('id') id: string,
    @Query('limit') limitRaw?: string,
    @Query('after') after?: string,
  ): Promise<MembersPageAnswer> {
    const limit = limitRaw === undefined ? DEFAULT_PAGE : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
      throw apiError(400, 'bad_request', `limit must be an integer from 1 to ${MAX_PAGE}`);
    }
    if (after !== undefined && (typeof after !== 'string' || !ID_PATTERN.test(after))) {
      throw apiError(400, 'bad_request', `after must match ${ID_PATTERN_SOURCE}`);
    }
    const page = await this.store.listMembers(conversationId(id), after ?? null, limit);
    if (!page) throw apiError(404, 'not_found', `conversation ${id} not found`);
    return { id, members: page.members, next: page.next };
  }

  private async removeIds(id: string, members: string[]): Promise<MembersChangeAnswer> {
    const result = await changeMembership(this.membership, conversationId(id), () =>
      this.store.removeMembers(id, members),
    );
    if (!result) throw apiError(404, 'not_found', `conversation ${id} not found`);
    await recordMembershipChange(this.events, id, 'removed', { members: [...new Set(members)] });
    return { id, changed: result.ok ? result.changed : 0, member_count: result.count };
  }
}

function conversationId(id: string): string {
  if (!ID_PATTERN.test(id))
    throw apiError(400, 'bad_request', `conversation id must match ${ID_PATTERN_SOURCE}`);
  return id;
}

function memberIds(body: unknown): string[] {
  const members = (body as { members?: unknown } | null)?.members;
  if (!Array.isArray(members) || members.length === 0 || members.length > MAX_IDS_PER_REQUEST) {
    throw apiError(400, 'bad_request', `members must be an array of 1 to ${MAX_IDS_PER_REQUEST} user ids`);
  }
  for (const m of members) {
    if (typeof m !== 'string' || !ID_PATTERN.test(m)) {
      throw apiError(400, 'bad_request', `each member must match ${ID_PATTERN_SOURCE}`);
    }
  }
  return members as string[];
}
