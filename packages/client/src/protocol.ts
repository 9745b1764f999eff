/**
 * Wire protocol v1: one JSON text message per frame, `{"type", "msg_id"?, "payload"?}`. The frame
 * types and codes are packages/protocol's, copied into protocol.generated.ts (the SDK has no runtime
 * dependencies). Field names stay snake_case here, exactly as on the wire; the public API converts to
 * camelCase.
 */
import type { ServerFrame } from './protocol.generated.js';

// Under the names the SDK has always exported (the server calls them ERROR_CODES and CLOSE).
export { CLOSE as CloseCode, ERROR_CODES as SERVER_ERROR_CODES } from './protocol.generated.js';
export type {
  AckPayload,
  ClientFrame,
  ErrorPayload,
  ErrorCode as ServerErrorCode,
  MessagePayload,
  PresencePayload,
  ReceiptPayload,
  ServerFrame,
  TypingPayload,
  WelcomePayload,
} from './protocol.generated.js';

/** `frame: undefined` means a well-formed frame of a type this client does not know (ignored, for forward compatibility). */
export type ParseResult = { ok: true; frame: ServerFrame | undefined } | { ok: false; reason: string };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Parses one inbound frame. Validates only what the client relies on, so a server adding fields
 * does not break old clients; a frame missing what we rely on is reported rather than half-used.
 */
export function parseServerFrame(data: unknown): ParseResult {
  if (typeof data !== 'string') return { ok: false, reason: 'binary frame' };
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    return { ok: false, reason: 'frame is not valid JSON' };
  }
  if (!isObj(raw) || typeof raw.type !== 'string') return { ok: false, reason: 'frame has no type' };
  const msgId = raw.msg_id;
  const p = raw.payload;
  const bad = (what: string): ParseResult => ({ ok: false, reason: `${raw.type} frame: ${what}` });

  switch (raw.type) {
    case 'welcome':
      if (!isObj(p) || typeof p.recovered !== 'boolean') return bad('payload.recovered missing');
      return {
        ok: true,
        frame: {
          type: 'welcome',
          payload: {
            user_id: String(p.user_id ?? ''),
            node_id: String(p.node_id ?? ''),
            // Non-positive or missing: 0, and the client falls back to its default interval.
            heartbeat_ms: isNum(p.heartbeat_ms) && p.heartbeat_ms > 0 ? p.heartbeat_ms : 0,
            recovered: p.recovered,
            // Optional (older servers omit it); anything but a non-empty string is ignored.
            ...(isStr(p.cursor) ? { cursor: p.cursor } : {}),
          },
        },
      };
    case 'message':
      if (!isStr(msgId)) return bad('msg_id (cursor) missing');
      if (!isObj(p) || !isStr(p.id) || typeof p.conversation_id !== 'string')
        return bad('payload incomplete');
      return {
        ok: true,
        frame: {
          type: 'message',
          msg_id: msgId,
          payload: {
            id: p.id,
            conversation_id: p.conversation_id,
            from: String(p.from ?? ''),
            ts: isNum(p.ts) ? p.ts : 0,
            body: p.body,
            // v1.1; older servers omit it.
            ...(isNum(p.seq) ? { seq: p.seq } : {}),
          },
        },
      };
    case 'receipt':
      if (!isStr(msgId)) return bad('msg_id (cursor) missing');
      if (
        !isObj(p) ||
        !isStr(p.conversation_id) ||
        !isStr(p.user_id) ||
        (p.kind !== 'delivered' && p.kind !== 'read') ||
        !isNum(p.seq)
      )
        return bad('payload incomplete');
      return {
        ok: true,
        frame: {
          type: 'receipt',
          msg_id: msgId,
          payload: {
            conversation_id: p.conversation_id,
            user_id: p.user_id,
            kind: p.kind,
            seq: p.seq,
            ts: isNum(p.ts) ? p.ts : 0,
          },
        },
      };
    case 'ack':
      if (!isStr(msgId)) return bad('msg_id (message id) missing');
      if (!isObj(p) || !isStr(p.ref)) return bad('payload.ref missing');
      return {
        ok: true,
        frame: {
          type: 'ack',
          msg_id: msgId,
          payload: {
            ref: p.ref,
            conversation_id: String(p.conversation_id ?? ''),
            ts: isNum(p.ts) ? p.ts : 0,
          },
        },
      };
    case 'error': {
      const code = isObj(p) && isStr(p.code) ? p.code : 'unknown';
      const message = isObj(p) && typeof p.message === 'string' ? p.message : code;
      return {
        ok: true,
        frame: { type: 'error', ...(isStr(msgId) ? { msg_id: msgId } : {}), payload: { code, message } },
      };
    }
    case 'pong':
      return { ok: true, frame: { type: 'pong' } };
    // v1.1 ephemeral frames
    case 'typing':
      if (!isObj(p) || !isStr(p.conversation_id) || !isStr(p.user_id)) return bad('payload incomplete');
      if (p.state !== 'start' && p.state !== 'stop') return bad('payload.state unknown');
      return {
        ok: true,
        frame: {
          type: 'typing',
          payload: {
            conversation_id: p.conversation_id,
            user_id: p.user_id,
            state: p.state,
            expires_in_ms: isNum(p.expires_in_ms) && p.expires_in_ms > 0 ? p.expires_in_ms : 0,
          },
        },
      };
    case 'presence':
      if (!isObj(p) || !isStr(p.conversation_id)) return bad('payload.conversation_id missing');
      if (Array.isArray(p.online)) {
        const online = p.online.filter(isStr);
        return {
          ok: true,
          frame: { type: 'presence', payload: { conversation_id: p.conversation_id, online } },
        };
      }
      if (!isStr(p.user_id) || (p.status !== 'online' && p.status !== 'offline'))
        return bad('payload incomplete');
      return {
        ok: true,
        frame: {
          type: 'presence',
          payload: { conversation_id: p.conversation_id, user_id: p.user_id, status: p.status },
        },
      };
    default:
      return { ok: true, frame: undefined };
  }
}
