import { DataSource } from 'typeorm';
import { chunks, inTransaction, list, tuples } from '../../database/transaction';
import { DirectoryStore } from '../conversation-directory';

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

  async ping(): Promise<void> {
    await this.ds.query('SELECT 1');
  }
}
