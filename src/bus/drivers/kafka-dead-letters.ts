import { Logger } from '@nestjs/common';
import { BusRecord } from '../../protocol/bus-record';
import { DeadLetter } from '../message-bus';
import { MalformedRecord } from './kafka-consumer';

/**
 * The dead-letter path of the Kafka bus: what a dead letter contains and where it came from.
 *
 * Dead letters go to `dlqTopic` (created at init with the ingress topic's partitions and retention;
 * key = conversation_id, value = {reason, partition, offset, at, message}): `quarantine` for the router's
 * `deadLetter`, and records that are not BusRecord JSON, which the consumer moves there itself
 * (reason `malformed`, message = the raw value as a string) before it commits past them. Each consumed
 * message's raw record is remembered (weakly held), so its dead letter carries it verbatim.
 */

/** Where a consumed message came from, so a dead letter can carry the record exactly as it was. */
interface RecordOrigin {
  raw: string;
  offset: string;
}

/** One acks=all produce request to the dead-letter topic (the producer's `produceDeadLetters`). */
export interface DeadLetterSink {
  produceDeadLetters(messages: { key: string | Buffer | null; value: string }[]): Promise<void>;
}

/**
 * The dead-letter record value: `{"reason", "partition", "offset", "at", "message"}` with `message`
 * spliced in as JSON text, so a record whose value cannot go through JSON.stringify again (nesting
 * beyond the stack, the very reason it may be here) is kept exactly as it was consumed.
 */
function deadLetterValue(
  messageJson: string,
  meta: { reason: string; partition: number; offset?: string },
): string {
  const head: Omit<DeadLetter, 'message'> & { offset?: string } = {
    reason: meta.reason,
    partition: meta.partition,
    ...(meta.offset === undefined ? {} : { offset: meta.offset }),
    at: Date.now(),
  };
  return `${JSON.stringify(head).slice(0, -1)},"message":${messageJson}}`;
}

/** JSON of a message that did not come from a consumed record; its body is replaced if it cannot be serialised. */
function serializeForDeadLetter(message: BusRecord): string {
  try {
    return JSON.stringify(message);
  } catch (err) {
    return JSON.stringify({ ...message, body: `[not serialisable: ${(err as Error).message}]` });
  }
}

export class KafkaDeadLetters {
  private readonly logger = new Logger('KafkaBus');
  /** Raw record of every message handed to the handler (weakly held): dead letters carry it verbatim. */
  private readonly origins = new WeakMap<BusRecord, RecordOrigin>();

  constructor(
    private readonly sink: DeadLetterSink,
    /** Called once per record the driver itself dead-lettered (reason `malformed`). */
    private readonly onDeadLetter?: (reason: string) => void,
  ) {}

  remember(message: BusRecord, raw: string, offset: string): void {
    this.origins.set(message, { raw, offset });
  }

  /** The router's `deadLetter`: the message's record as consumed, or its JSON if it was not consumed. */
  async quarantine(message: BusRecord, reason: string, partition: number): Promise<void> {
    const origin = this.origins.get(message);
    await this.sink.produceDeadLetters([
      {
        key: typeof message.conversation_id === 'string' ? message.conversation_id : null,
        value: deadLetterValue(origin?.raw ?? serializeForDeadLetter(message), {
          reason,
          partition,
          offset: origin?.offset,
        }),
      },
    ]);
  }

  async writeMalformed(topic: string, partition: number, records: MalformedRecord[]): Promise<void> {
    await this.sink.produceDeadLetters(
      records.map((r) => ({
        key: r.key,
        value: deadLetterValue(JSON.stringify(r.value), { reason: 'malformed', partition, offset: r.offset }),
      })),
    );
    for (const r of records) {
      this.logger.warn(`dead-lettered malformed record ${topic}[${partition}]@${r.offset}`);
      this.onDeadLetter?.('malformed');
    }
  }
}
