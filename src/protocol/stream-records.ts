import { IngressMessage } from './envelope';

/**
 * The public event stream: every record relay writes to the ingress topic, as customers' consumers
 * read it (schema: docs/schemas/stream-record.schema.json, a unit test keeps them in step). Records
 * are discriminated by `kind`; a record without `kind` is a message (written by older nodes).
 * Readers must skip kinds they do not know and tolerate unknown fields: new kinds and fields are
 * added without bumping `schema_version`; a change that breaks readers bumps it.
 */
export const STREAM_SCHEMA_VERSION = 1;

/** An accepted message: the envelope every member receives, plus the sender's ref. */
export interface StreamMessageRecord extends IngressMessage {
  schema_version: typeof STREAM_SCHEMA_VERSION;
  kind: 'message';
}

/** A membership change made through the directory API (built-in directory only). */
export interface MembershipRecord {
  schema_version: typeof STREAM_SCHEMA_VERSION;
  kind: 'membership';
  /** ULID of the change (consumers dedupe by it: the stream is at-least-once). */
  id: string;
  conversation_id: string;
  ts: number;
  /**
   * `added`/`removed`: `members` are the ids the request named (idempotent: some may already have
   * been members / not members). `replaced`: the list was replaced by PUT (`member_count` ids; read
   * it with GET .../members). `deleted`: the conversation is gone.
   */
  op: 'added' | 'removed' | 'replaced' | 'deleted';
  members?: string[];
  member_count?: number;
}

/**
 * Presence changes (user online/offline). Reserved for the presence feature: nothing writes them
 * yet (see WebhookEvents.presenceChanged). Keyed by `presence:<user_id>` on the topic.
 */
export interface PresenceRecord {
  schema_version: typeof STREAM_SCHEMA_VERSION;
  kind: 'presence';
  id: string;
  user_id: string;
  status: 'online' | 'offline';
  ts: number;
}

/** Everything relay writes to the stream. */
export type StreamRecord = StreamMessageRecord | MembershipRecord | PresenceRecord;

/** What any reader of the topic gets: a JSON object; its kind may be one this version does not know. */
export type RawStreamRecord = { kind?: unknown; schema_version?: unknown } & Record<string, unknown>;

/** The partition key of a record: its conversation (per-conversation order), or the user for presence. */
export function streamKeyOf(record: object): string {
  const r = record as { conversation_id?: unknown; user_id?: unknown };
  if (typeof r.conversation_id === 'string') return r.conversation_id;
  return `presence:${String(r.user_id)}`;
}

/** Records the router routes: messages (kind absent = a record from before the stream had kinds). */
export function isMessageKind(record: object): boolean {
  const kind = (record as { kind?: unknown }).kind;
  return kind === undefined || kind === 'message';
}

/**
 * Kinds written for the stream's readers only (presence): routers' consumers commit past them.
 * Every other kind reaches the router, which routes messages and receipts, drops its cached member
 * list on a membership change (src/router/router-members.ts) and skips what it does not know
 * (src/protocol/bus-record.ts).
 */
export function isStreamOnlyKind(record: object): boolean {
  const kind = (record as { kind?: unknown }).kind;
  return kind === 'presence';
}
