import { Injectable, Logger } from '@nestjs/common';
import { Connection } from './connection';

/**
 * Told about every connection this registry gains or loses, whatever its transport (the live
 * features hang off this). `userLast`: it was the user's only connection on this node.
 */
export interface ConnectionLifecycle {
  opened(conn: Connection, userFirst: boolean): void;
  closed(conn: Connection, userLast: boolean): void;
}

/**
 * A user's connections here: the connection itself while it is their only one (most users: no
 * container at all), else an array that is replaced, never changed in place.
 */
export type UserConnections = Connection | readonly Connection[];

function listOf(held: UserConnections): readonly Connection[] {
  return Array.isArray(held) ? (held as readonly Connection[]) : [held as Connection];
}

/**
 * The connections open on this node, by user. Owned by the event loop: no locking needed.
 * Lists handed out are snapshots: a caller walking one while a connection closes sees the list it
 * started with, as it would with a Set. Per connection this costs a map entry, where a Set per user
 * and a Set of all connections cost ~180 B more.
 */
@Injectable()
export class ConnectionRegistry {
  private readonly logger = new Logger(ConnectionRegistry.name);
  private readonly byUser = new Map<string, UserConnections>();
  private readonly lifecycle: ConnectionLifecycle[] = [];
  private count = 0;

  /** Registers a lifecycle observer (at bootstrap, before connections arrive). */
  observe(observer: ConnectionLifecycle): void {
    this.lifecycle.push(observer);
  }

  add(conn: Connection): void {
    const had = this.byUser.get(conn.userId);
    if (had !== undefined && listOf(had).includes(conn)) return;
    this.count++;
    this.byUser.set(conn.userId, had === undefined ? conn : [...listOf(had), conn]);
    this.tell((o) => o.opened(conn, had === undefined));
  }

  remove(conn: Connection): void {
    const had = this.byUser.get(conn.userId);
    if (had === undefined || !listOf(had).includes(conn)) return;
    this.count--;
    const left = listOf(had).filter((c) => c !== conn);
    if (left.length === 0) this.byUser.delete(conn.userId);
    else this.byUser.set(conn.userId, left.length === 1 ? left[0] : left);
    this.tell((o) => o.closed(conn, left.length === 0));
  }

  /** An observer's failure must not undo the registration (or escape into socket callbacks). */
  private tell(call: (o: ConnectionLifecycle) => void): void {
    for (const o of this.lifecycle) {
      try {
        call(o);
      } catch (err) {
        this.logger.error(`connection lifecycle observer failed: ${(err as Error).message}`);
      }
    }
  }

  /**
   * The user's connections here (a snapshot: later adds and removes do not change it), or undefined.
   * A user's only connection comes in a fresh one-element array.
   */
  forUser(userId: string): readonly Connection[] | undefined {
    const held = this.byUser.get(userId);
    return held === undefined ? undefined : listOf(held);
  }

  /**
   * forUser without the one-element array: the connection itself while it is the user's only one,
   * else a snapshot array (never changed in place). For the per-delivery path.
   */
  connectionsOf(userId: string): UserConnections | undefined {
    return this.byUser.get(userId);
  }

  /** The users with at least one connection here. */
  users(): IterableIterator<string> {
    return this.byUser.keys();
  }

  /** Whether the connection is registered here. */
  has(conn: Connection): boolean {
    const held = this.byUser.get(conn.userId);
    return held !== undefined && (held === conn || (Array.isArray(held) && held.includes(conn)));
  }

  /**
   * Every connection here, user by user (no Set of its own: ~30 B per connection). Walking it while
   * connections come and go is safe; a connection added meanwhile may or may not be visited.
   */
  get all(): Iterable<Connection> {
    return this.each();
  }

  private *each(): IterableIterator<Connection> {
    for (const held of this.byUser.values()) {
      if (Array.isArray(held)) yield* held as readonly Connection[];
      else yield held as Connection;
    }
  }

  get size(): number {
    return this.count;
  }
}
