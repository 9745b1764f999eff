import { applyDecorators, Body, Controller, HttpCode, Param, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { apiError, ApiErrorBody } from '../common/api-error';
import { Config } from '../config/config.module';
import { AdminKeyGuard } from '../directory/directory.controller';
import { PublishBatchBody, PublishedBatch, PublishedMessage, PublishMessageBody } from './publish.dto';
import { PublishService } from './publish.service';

const errors = applyDecorators(
  ApiResponse({
    status: 400,
    description: 'bad_request: invalid from, ref, body or conversation id, body too deep',
    type: ApiErrorBody,
  }),
  ApiResponse({
    status: 401,
    description: 'unauthorized: admin API key missing or wrong (outside dev auth)',
    type: ApiErrorBody,
  }),
  ApiResponse({
    status: 403,
    description: 'forbidden: `from` is not a member and not a service id',
    type: ApiErrorBody,
  }),
  ApiResponse({ status: 404, description: 'not_found: the conversation does not exist', type: ApiErrorBody }),
  ApiResponse({
    status: 413,
    description:
      'too_large: a message over MAX_FRAME_BYTES (as a send frame), or the request body over its limit',
    type: ApiErrorBody,
  }),
  ApiResponse({
    status: 503,
    description: 'unavailable: bus, directory or dedupe store down; retry with the same refs',
    type: ApiErrorBody,
  }),
);

/** Server-side publishing for backends (bots, notifications, imports): admin API key, no WebSocket. */
@ApiTags('publish')
@ApiBearerAuth()
@Controller('v1')
@UseGuards(AdminKeyGuard)
export class PublishController {
  constructor(
    private readonly publisher: PublishService,
    private readonly config: Config,
  ) {}

  @Post('conversations/:id/messages')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Publish a message to a conversation',
    description:
      'Answers 201 only once the message is durable on the bus; every member gets it like a WebSocket send. The same (from, ref) within DEDUPE_WINDOW_MS answers the same id and ts.',
  })
  @ApiParam({ name: 'id', description: 'conversation id' })
  @ApiBody({ type: PublishMessageBody })
  @ApiResponse({ status: 201, type: PublishedMessage })
  @errors
  async publishOne(@Param('id') id: string, @Body() body: unknown): Promise<PublishedMessage> {
    const [record] = await this.publisher.publish([this.publisher.validate(id, body)]);
    return { id: record.id, ts: record.ts };
  }

  @Post('messages')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Publish many messages (imports)',
    description:
      'All checked before any is published, then published in request order; 201 once all are durable. On 503 retry the whole request with the same refs (nothing is duplicated). Refusals name the message by `index`.',
  })
  @ApiBody({ type: PublishBatchBody })
  @ApiResponse({ status: 201, type: PublishedBatch })
  @errors
  async publishMany(@Body() body: unknown): Promise<PublishedBatch> {
    // `{"messages": [...]}`, or the array itself.
    const list = Array.isArray(body) ? body : (body as { messages?: unknown } | null)?.messages;
    if (!Array.isArray(list) || list.length === 0) {
      throw apiError(400, 'bad_request', 'messages must be a non-empty array');
    }
    const max = this.config.publish.maxBatch;
    if (list.length > max) {
      throw apiError(400, 'bad_request', `at most ${max} messages per request (PUBLISH_MAX_BATCH)`);
    }
    const items = list.map((m: unknown, i) =>
      this.publisher.validate((m as { conversation_id?: unknown } | null)?.conversation_id, m, i),
    );
    const records = await this.publisher.publish(items);
    return {
      messages: records.map((r) => ({ id: r.id, ts: r.ts, conversation_id: r.conversation_id, ref: r.ref })),
    };
  }
}
