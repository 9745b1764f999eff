import { Injectable } from '@nestjs/common';
import { Connection } from './connection';

/** The connections open on this node, by user. Owned by the event loop: no locking needed. */
@Injectable()
export class ConnectionRegistry {
  private readonly byUser = new Map<string, Set<Connection>>();
  readonly all = new Set<Connection>();

  add(conn: Connection): void {
    this.all.add(conn);
    let set = this.byUser.get(conn.userId);
    if (!set) this.byUser.set(conn.userId, (set = new Set()));
    set.add(conn);
  }

  remove(conn: Connection): void {
    this.all.delete(conn);
    const set = this.byUser.get(conn.userId);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) this.byUser.delete(conn.userId);
  }

  forUser(userId: string): Set<Connection> | undefined {
    return this.byUser.get(userId);
  }

  get size(): number {
    return this.all.size;
  }
}
