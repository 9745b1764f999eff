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

/** The connections open on this node, by user. Owned by the event loop: no locking needed. */
@Injectable()
export class ConnectionRegistry {
  private readonly logger = new Logger(ConnectionRegistry.name);
  private readonly byUser = new Map<string, Set<Connection>>();
  private readonly lifecycle: ConnectionLifecycle[] = [];
  readonly all = new Set<Connection>();

  /** Registers a lifecycle observer (at bootstrap, before connections arrive). */
  observe(observer: ConnectionLifecycle): void {
    this.lifecycle.push(observer);
  }

  add(conn: Connection): void {
    if (this.all.has(conn)) return;
    this.all.add(conn);
    let set = this.byUser.get(conn.userId);
    if (!set) this.byUser.set(conn.userId, (set = new Set()));
    set.add(conn);
    this.tell((o) => o.opened(conn, set.size === 1));
  }

  remove(conn: Connection): void {
    if (!this.all.delete(conn)) return;
    const set = this.byUser.get(conn.userId);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) this.byUser.delete(conn.userId);
    this.tell((o) => o.closed(conn, set.size === 0));
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

  forUser(userId: string): Set<Connection> | undefined {
    return this.byUser.get(userId);
  }

  get size(): number {
    return this.all.size;
  }
}
