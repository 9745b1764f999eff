import { DataSource } from 'typeorm';
import { chunks, inTransaction, list, tuples } from '../../database/transaction';
import { DirectoryStore, MembersChange, MembersPage } from '../conversation-directory';

/**
 * The built-in directory in MySQL/MariaDB (tables `conversation` and `conversation_member`, see
 * src/database/migrations). A `put` replaces the member list in one transaction, so readers see
 * the old list or the new one, never a mix; members keep the order they were given.
 */
export class MysqlDirectoryStoreDriver extends DirectoryStore {
  constructor(
    private readonly ds: DataSource,
    private readonly chunkRows = 1000,
  ) {
    super();
  }

  async get(conversationIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const part of chunks([...new Set(conversationIds)], this.chunkRows)) {
      const rows: { id: string; user_id: string | null }[] = await this.ds.query(
        `SELECT c.id, m.user_id
         FROM conversation c LEFT JOIN conversation_member m ON m.conversation_id = c.id
         WHERE c.id IN (${list(part.length)})
         ORDER BY c.id, m.pos`,
        part,
      );
      for (const r of rows) {
        let members = out.get(r.id);
        if (!members) out.set(r.id, (members = []));
        if (r.user_id !== null) members.push(r.user_id);
      }
    }
    return out;
  }

  async put(conversationId: string, members: string[]): Promise<void> {
    const unique = [...new Set(members)];
    await inTransaction(this.ds, async (qr) => {
      // Creates the conversation or locks its row: concurrent puts of one conversation queue here.
      await qr.query(`INSERT INTO conversation (id) VALUES (?) ON DUPLICATE KEY UPDATE id = id`, [
        conversationId,
      ]);
      await qr.query(`DELETE FROM conversation_member WHERE conversation_id = ?`, [conversationId]);
      let pos = 0;
      for (const part of chunks(unique, this.chunkRows)) {
        await qr.query(
          `INSERT INTO conversation_member (conversation_id, user_id, pos) VALUES ${tuples(part.length, 3)}`,
          part.flatMap((userId) => [conversationId, userId, pos++]),
        );
      }
    });
  }

  async delete(conversationId: string): Promise<boolean> {
    // Members go with it (ON DELETE CASCADE); affectedRows counts the conversation row only.
    const result: { affectedRows: number } = await this.ds.query(`DELETE FROM conversation WHERE id = ?`, [
      conversationId,
    ]);
    return result.affectedRows > 0;
  }

  /**
   * One transaction: the upsert of the conversation row locks it, so adds to one conversation queue
   * there (the limit check cannot be raced); the new rows go in with INSERT IGNORE statements, never a
   * rewrite of the list, so concurrent adds keep each other's members.
   */
  async addMembers(conversationId: string, members: string[], maxMembers: number): Promise<MembersChange> {
    const unique = [...new Set(members)];
    return inTransaction(this.ds, async (qr) => {
      await qr.query(`INSERT INTO conversation (id) VALUES (?) ON DUPLICATE KEY UPDATE id = id`, [
        conversationId,
      ]);
      const [{ n, top }] = (await qr.query(
        `SELECT COUNT(*) AS n, COALESCE(MAX(pos), -1) AS top FROM conversation_member WHERE conversation_id = ?`,
        [conversationId],
      )) as { n: number | string; top: number | string }[];
      const count = Number(n);
      const present = new Set<string>();
      for (const part of chunks(unique, this.chunkRows)) {
        const rows: { user_id: string }[] = await qr.query(
          `SELECT user_id FROM conversation_member WHERE conversation_id = ? AND user_id IN (${list(part.length)})`,
          [conversationId, ...part],
        );
        for (const r of rows) present.add(r.user_id);
      }
      const fresh = unique.filter((m) => !present.has(m));
      if (count + fresh.length > maxMembers) return { ok: false as const, count };
      let pos = Number(top) + 1;
      for (const part of chunks(fresh, this.chunkRows)) {
        await qr.query(
          `INSERT IGNORE INTO conversation_member (conversation_id, user_id, pos) VALUES ${tuples(part.length, 3)}`,
          part.flatMap((userId) => [conversationId, userId, pos++]),
        );
      }
      return { ok: true as const, changed: fresh.length, count: count + fresh.length };
    });
  }

  /** DELETE statements of the named rows only; the conversation row lock orders it with adds. */
  async removeMembers(conversationId: string, members: string[]): Promise<MembersChange | null> {
    const unique = [...new Set(members)];
    return inTransaction(this.ds, async (qr) => {
      const exists: unknown[] = await qr.query(`SELECT id FROM conversation WHERE id = ? FOR UPDATE`, [
        conversationId,
      ]);
      if (exists.length === 0) return null;
      let changed = 0;
      for (const part of chunks(unique, this.chunkRows)) {
        const result: { affectedRows: number } = await qr.query(
          `DELETE FROM conversation_member WHERE conversation_id = ? AND user_id IN (${list(part.length)})`,
          [conversationId, ...part],
        );
        changed += result.affectedRows;
      }
      const [{ n }] = (await qr.query(
        `SELECT COUNT(*) AS n FROM conversation_member WHERE conversation_id = ?`,
        [conversationId],
      )) as { n: number | string }[];
      return { ok: true as const, changed, count: Number(n) };
    });
  }

  async listMembers(
    conversationId: string,
    after: string | null,
    limit: number,
  ): Promise<MembersPage | null> {
    const exists: unknown[] = await this.ds.query(`SELECT id FROM conversation WHERE id = ?`, [
      conversationId,
    ]);
    if (exists.length === 0) return null;
    const rows: { user_id: string }[] = await this.ds.query(
      `SELECT user_id FROM conversation_member WHERE conversation_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`,
      [conversationId, after ?? '', limit + 1],
    );
    const page = rows.slice(0, limit).map((r) => r.user_id);
    return { members: page, next: rows.length > limit ? page[page.length - 1] : null };
  }

  async ping(): Promise<void> {
    await this.ds.query('SELECT 1');
  }
}
