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
  UnauthorizedException,
  UseGuards,
  ValidationPipe,
} from '@nestjs/common';
import { ArrayMaxSize, IsArray, IsString, Matches } from 'class-validator';
import { timingSafeEqual } from 'node:crypto';
import { Config } from '../config/config.module';
import { DirectoryStore } from './conversation-directory';
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
      throw new UnauthorizedException('admin API key required');
    }
    return true;
  }
}

const validId = new ValidationPipe({ whitelist: true, forbidNonWhitelisted: false });

@Controller('v1/conversations')
@UseGuards(AdminKeyGuard)
export class DirectoryController {
  constructor(
    private readonly store: DirectoryStore,
    private readonly config: Config,
  ) {}

  @Put(':id')
  async put(@Param('id') id: string, @Body(validId) dto: PutConversationDto) {
    checkId(id);
    const max = this.config.directory.maxMembers;
    if (dto.members.length > max) {
      throw new BadRequestException(
        `members lists ${dto.members.length} ids; a conversation has at most ${max} (MAX_CONVERSATION_MEMBERS)`,
      );
    }
    await this.store.put(id, dto.members);
    return { id, members: [...new Set(dto.members)] };
  }

  @Get(':id')
  async get(@Param('id') id: string) {
    const members = (await this.store.get([checkId(id)])).get(id);
    if (!members) throw new NotFoundException(`conversation ${id} not found`);
    return { id, members };
  }

  @Delete(':id')
  @HttpCode(204)
  async delete(@Param('id') id: string): Promise<void> {
    if (!(await this.store.delete(checkId(id)))) throw new NotFoundException(`conversation ${id} not found`);
  }
}

function checkId(id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new BadRequestException(`conversation id must match ${ID_PATTERN_SOURCE}`);
  }
  return id;
}
