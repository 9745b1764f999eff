import {
  ApiBearerAuth,
  ApiOperation,
  ApiParam,
  ApiProduces,
  ApiQuery,
  ApiResponse,
  ApiTags,
} from '@nestjs/swagger';
import {
  BadRequestException,
  Controller,
  Get,
  Header,
  Param,
  Query,
  Res,
  ServiceUnavailableException,
  UseGuards,
} from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Config } from '../config/config.module';
import { ConversationDirectory } from '../directory/conversation-directory';
import { AdminKeyGuard } from '../directory/directory.controller';
import { ConnectionRegistry } from '../gateway/connection.registry';
import { TailHub } from '../gateway/tail.hub';
import { encodeCursor } from '../outbox/cursor';
import { OutboxStore } from '../outbox/outbox.store';
import { ID_PATTERN, ID_PATTERN_SOURCE } from '../protocol/frames';
import { SessionMap } from '../session/session-map';
import { TailStreams } from './tail.streams';

/** The page and its script: plain files next to this one (copied to dist by nest-cli.json's assets). */
const asset = (name: string) => readFileSync(join(__dirname, 'public', name), 'utf8');

/**
 * The debug console. The page and script are public (they hold no data); every `/console/api/*`
 * route takes the admin key like the directory API (open in dev auth mode).
 */
@ApiTags('console')
@Controller('console')
export class ConsoleController {
  private readonly page = asset('console.html');
  private readonly script = asset('console.js');

  constructor(
    private readonly config: Config,
    private readonly sessions: SessionMap,
    private readonly registry: ConnectionRegistry,
    private readonly outbox: OutboxStore,
    private readonly directory: ConversationDirectory,
    private readonly hub: TailHub,
    private readonly tails: TailStreams,
  ) {}

  @Get()
  @ApiOperation({ summary: 'The debug console page (DEBUG_CONSOLE; public, holds no data)' })
  @ApiProduces('text/html')
  @ApiResponse({ status: 200, description: 'HTML page' })
  @Header('content-type', 'text/html; charset=utf-8')
  @Header('cache-control', 'no-store')
  index(): string {
    return this.page;
  }

  @Get('console.js')
  @ApiOperation({ summary: "The debug console's script" })
  @ApiProduces('text/javascript')
  @ApiResponse({ status: 200, description: 'JavaScript' })
  @Header('content-type', 'text/javascript; charset=utf-8')
  @Header('cache-control', 'no-store')
  js(): string {
    return this.script;
  }

  /** Live nodes, and connection counts: this node's only (the session map is keyed by user, not node). */
  @Get('api/overview')
  @ApiOperation({ summary: 'Live nodes and connection counts (this node)' })
  @ApiBearerAuth()
  @ApiResponse({ status: 200, description: 'overview' })
  @ApiResponse({ status: 401, description: 'admin API key missing or wrong (outside dev auth)' })
  @UseGuards(AdminKeyGuard)
  async overview() {
    const nodes = [...(await this.sessions.liveNodes())].sort();
    return {
      node: this.config.nodeId,
      nodes,
      connections: { [this.config.nodeId]: this.registry.size },
      connectionsScope: 'this node only',
      authMode: this.config.auth.mode,
      tail: { subscribers: this.hub.subscribers, ...this.hub.limits },
    };
  }

  /** A user's sessions on every node (session map), its connections here and its outbox position. */
  @Get('api/users/:id')
  @ApiOperation({ summary: "A user's sessions on every node, connections here, outbox position" })
  @ApiBearerAuth()
  @ApiParam({ name: 'id', description: 'user id' })
  @ApiResponse({ status: 200, description: 'the user' })
  @ApiResponse({ status: 400, description: 'invalid id' })
  @ApiResponse({ status: 401, description: 'admin API key missing or wrong (outside dev auth)' })
  @UseGuards(AdminKeyGuard)
  async user(@Param('id') id: string) {
    checkId(id, 'user');
    const [sessions, retention] = await Promise.all([
      this.sessions.lookup([id]),
      this.outbox.retention(id, 0),
    ]);
    const epoch = this.outbox.epoch();
    const here = [...(this.registry.forUser(id) ?? [])].map((c) => ({
      connId: c.id,
      state: c.state,
      connectedAt: c.connectedAt,
      lastPing: c.lastPing,
    }));
    return {
      user: id,
      sessions: sessions.get(id) ?? [],
      connectionsHere: here,
      outbox: {
        epoch,
        head: retention.head,
        // The cursor of the newest delivery: a client that has seen everything holds this one.
        headCursor: retention.head > 0 ? encodeCursor(epoch, retention.head) : null,
        oldestRetainedSeq: retention.firstRetainedAfter,
      },
    };
  }

  @Get('api/conversations/:id')
  @ApiOperation({ summary: 'A conversation as the directory answers it' })
  @ApiBearerAuth()
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiResponse({ status: 200, description: '{id, exists, members}' })
  @ApiResponse({ status: 400, description: 'invalid id' })
  @ApiResponse({ status: 401, description: 'admin API key missing or wrong (outside dev auth)' })
  @UseGuards(AdminKeyGuard)
  async conversation(@Param('id') id: string) {
    checkId(id, 'conversation');
    const members = (await this.directory.members([id])).get(id) ?? null;
    return { id, exists: members !== null, members: members ?? [] };
  }

  /** Server-Sent Events: acks, refusals and deliveries on this node for one conversation or user. */
  @Get('api/tail')
  @ApiOperation({
    summary: 'Server-Sent Events: acks, refusals and deliveries on this node for one conversation or user',
  })
  @ApiBearerAuth()
  @ApiQuery({ name: 'conversation', required: false })
  @ApiQuery({ name: 'user', required: false })
  @ApiProduces('text/event-stream')
  @ApiResponse({ status: 200, description: 'an event stream' })
  @ApiResponse({ status: 400, description: 'not exactly one of conversation and user' })
  @ApiResponse({ status: 401, description: 'admin API key missing or wrong (outside dev auth)' })
  @UseGuards(AdminKeyGuard)
  tail(
    @Query('conversation') conversation: string | undefined,
    @Query('user') user: string | undefined,
    @Res() res: ServerResponse,
  ): void {
    if ((conversation === undefined) === (user === undefined)) {
      throw new BadRequestException('give exactly one of ?conversation= and ?user=');
    }
    const filter =
      conversation !== undefined
        ? { conversation: checkId(conversation, 'conversation') }
        : { user: checkId(user!, 'user') };
    if (!this.tails.start(filter, res)) {
      throw new ServiceUnavailableException(
        `${this.hub.limits.maxSubscribers} tails are open already; close one first`,
      );
    }
  }
}

function checkId(id: string, what: string): string {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw new BadRequestException(`${what} id must match ${ID_PATTERN_SOURCE}`);
  }
  return id;
}
