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
import { ArrayMaxSize, IsArray, IsString, Length } from 'class-validator';
import { timingSafeEqual } from 'node:crypto';
import { Config } from '../config/config.module';
import { DirectoryStore } from './conversation-directory';

export class PutConversationDto {
  @IsArray()
  @ArrayMaxSize(100_000)
  @IsString({ each: true })
  @Length(1, 128, { each: true })
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
  constructor(private readonly store: DirectoryStore) {}

  @Put(':id')
  async put(@Param('id') id: string, @Body(validId) dto: PutConversationDto) {
    await this.store.put(checkId(id), dto.members);
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
  if (id.length < 1 || id.length > 128) throw new BadRequestException('conversation id must be 1..128 chars');
  return id;
}
