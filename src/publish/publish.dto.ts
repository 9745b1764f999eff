import { ApiProperty } from '@nestjs/swagger';

/** Documentation shapes of the publish API (validation runs on the protocol's own schemas). */
export class PublishMessageBody {
  @ApiProperty({
    description: 'sender: a member of the conversation, or a service id listed in PUBLISH_SERVICE_IDS',
    example: 'billing-bot',
  })
  from!: string;
  @ApiProperty({
    description: 'any JSON value, delivered verbatim (same limits as a WebSocket send)',
    example: { text: 'Your invoice is ready' },
  })
  body!: unknown;
  @ApiProperty({
    description:
      'idempotency key, 1-64 characters: the same (from, ref) within DEDUPE_WINDOW_MS answers the same id and creates nothing',
    example: 'invoice-4711',
  })
  ref!: string;
}

export class BatchMessage extends PublishMessageBody {
  @ApiProperty({ example: 'room-1' })
  conversation_id!: string;
}

export class PublishBatchBody {
  @ApiProperty({ type: [BatchMessage], description: 'at most PUBLISH_MAX_BATCH; published in this order' })
  messages!: BatchMessage[];
}

export class PublishedMessage {
  @ApiProperty({
    description: 'server message id (ULID), as in the `message` frame',
    example: '01JD6Z5C1Q8N3V9K4T2X7M0BAP',
  })
  id!: string;
  @ApiProperty({ description: 'acceptance time, ms since the epoch', example: 1764590400000 })
  ts!: number;
}

export class PublishedBatchItem extends PublishedMessage {
  @ApiProperty()
  conversation_id!: string;
  @ApiProperty()
  ref!: string;
}

export class PublishedBatch {
  @ApiProperty({ type: [PublishedBatchItem], description: 'in request order' })
  messages!: PublishedBatchItem[];
}
