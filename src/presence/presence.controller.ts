import { BadRequestException, Controller, Get, Query, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Config } from '../config/config.module';
import { AdminKeyGuard } from '../directory/directory.controller';
import { ID_PATTERN, ID_PATTERN_SOURCE } from '../protocol/frames';
import { PresenceStore } from './presence.store';

/**
 * `GET /v1/presence?user_id=a&user_id=b`: the announced status of up to PRESENCE_MAX_MEMBERS users
 * (the same status presence frames carry, grace included). Open in dev auth mode; otherwise
 * `Authorization: Bearer <ADMIN_API_KEY>`, like the directory API.
 */
@ApiTags('presence')
@ApiBearerAuth()
@Controller('v1/presence')
@UseGuards(AdminKeyGuard)
export class PresenceController {
  constructor(
    private readonly store: PresenceStore,
    private readonly config: Config,
  ) {}

  @ApiOperation({
    summary:
      'Who is online (protocol v1.1 presence): a user is online while any connection of theirs is live',
  })
  @ApiQuery({ name: 'user_id', isArray: true, description: 'repeat for each user (at most 1000)' })
  @ApiResponse({
    status: 200,
    description: '{users: [{user_id, status: "online"|"offline"}], online: [user_id]}',
  })
  @ApiResponse({ status: 400, description: 'no ids, an invalid id, or more than 1000 ids' })
  @ApiResponse({ status: 401, description: 'missing or wrong admin key (outside dev mode)' })
  @Get()
  async get(@Query('user_id') raw: unknown) {
    const ids = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    const max = this.config.live.presenceMaxMembers;
    if (ids.length === 0) throw new BadRequestException('give at least one user_id');
    if (ids.length > max) {
      throw new BadRequestException(`at most ${max} user_id per request (PRESENCE_MAX_MEMBERS)`);
    }
    for (const id of ids) {
      if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
        throw new BadRequestException(`each user_id must match ${ID_PATTERN_SOURCE}`);
      }
    }
    const users = [...new Set(ids as string[])];
    const states = await this.store.status(users);
    const list = users.map((id) => ({
      user_id: id,
      status: states.get(id)?.online ? ('online' as const) : ('offline' as const),
    }));
    return { users: list, online: list.filter((u) => u.status === 'online').map((u) => u.user_id) };
  }
}
