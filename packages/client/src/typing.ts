import type { ClientFrame, TypingPayload } from './protocol.generated.js';

/** Another member started (`typing: true`) or stopped (`typing: false`, including on expiry) typing. */
export interface TypingEvent {
  conversationId: string;
  userId: string;
  typing: boolean;
}

/** The part of the connection loop typing uses. */
interface Wire {
  transmit(frame: ClientFrame): boolean;
}

export interface TypingOptions {
  /** How often a `start` is re-sent while the user keeps typing (the server relays one per 2 s). */
  typingIntervalMs: number;
  /** No typing() call for this long sends `stop`. */
  typingIdleMs: number;
}

type Timer = ReturnType<typeof setTimeout>;

/**
 * v1.1 typing indicators (ephemeral, best effort). Outgoing: `typing(conversation)` on every
 * keystroke sends `start` at most once per interval and `stop` once the user is idle. Incoming:
 * who is typing where; each `start` expires on its own after the server's `expires_in_ms` unless
 * renewed, so a lost `stop` never leaves someone typing forever.
 */
export class Typing {
  /** conversation -> when our last `start` went out (0: none since the last stop) and the idle timer. */
  private readonly mine = new Map<string, { startedAt: number; idle: Timer }>();
  /** conversation -> typing user -> expiry timer. */
  private readonly others = new Map<string, Map<string, Timer>>();

  constructor(
    private readonly wire: Wire,
    private readonly options: TypingOptions,
    private readonly emit: (event: TypingEvent) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** The user typed in the conversation (call it on every keystroke). */
  typing(conversationId: string): void {
    const entry = this.mine.get(conversationId);
    if (entry) clearTimeout(entry.idle);
    const idle = setTimeout(() => this.stop(conversationId), this.options.typingIdleMs);
    const now = this.now();
    if (entry && entry.startedAt > 0 && now - entry.startedAt < this.options.typingIntervalMs) {
      entry.idle = idle;
      return;
    }
    // Not sent (offline): 0, so the next keystroke tries again.
    const sent = this.wire.transmit({
      type: 'typing',
      payload: { conversation_id: conversationId, state: 'start' },
    });
    this.mine.set(conversationId, { startedAt: sent ? now : 0, idle });
  }

  /** The user stopped typing (idle, sent the message, left the screen). */
  stop(conversationId: string): void {
    const entry = this.mine.get(conversationId);
    if (!entry) return;
    clearTimeout(entry.idle);
    this.mine.delete(conversationId);
    if (entry.startedAt > 0) {
      this.wire.transmit({ type: 'typing', payload: { conversation_id: conversationId, state: 'stop' } });
    }
  }

  /** A `typing` frame from the server. */
  received(p: TypingPayload): void {
    let users = this.others.get(p.conversation_id);
    const timer = users?.get(p.user_id);
    if (timer !== undefined) clearTimeout(timer);
    if (p.state === 'start' && p.expires_in_ms > 0) {
      if (!users) this.others.set(p.conversation_id, (users = new Map()));
      users.set(
        p.user_id,
        setTimeout(() => this.ended(p.conversation_id, p.user_id), p.expires_in_ms),
      );
      if (timer === undefined)
        this.emit({ conversationId: p.conversation_id, userId: p.user_id, typing: true });
      return;
    }
    if (timer !== undefined) this.ended(p.conversation_id, p.user_id);
  }

  /** Who is typing in the conversation now. */
  typingUsers(conversationId: string): string[] {
    return [...(this.others.get(conversationId)?.keys() ?? [])];
  }

  /** The connection dropped: the server stops our typing itself; the next keystroke starts again. */
  disconnected(): void {
    for (const entry of this.mine.values()) entry.startedAt = 0;
  }

  close(): void {
    for (const entry of this.mine.values()) clearTimeout(entry.idle);
    for (const users of this.others.values()) for (const t of users.values()) clearTimeout(t);
    this.mine.clear();
    this.others.clear();
  }

  private ended(conversationId: string, userId: string): void {
    const users = this.others.get(conversationId);
    if (!users) return;
    clearTimeout(users.get(userId));
    users.delete(userId);
    if (users.size === 0) this.others.delete(conversationId);
    this.emit({ conversationId, userId, typing: false });
  }
}
