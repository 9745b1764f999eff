import { MigrationInterface, QueryRunner } from 'typeorm';
import { idCollation } from './id-collation';

/**
 * The built-in conversation directory (managed through /v1/conversations). `pos` keeps members in
 * the order they were given, like the in-memory store; deleting a conversation cascades to its
 * members. Idempotent DDL, as in the outbox migration.
 */
export class DirectorySchema1767225600001 implements MigrationInterface {
  name = 'DirectorySchema1767225600001';

  async up(qr: QueryRunner): Promise<void> {
    const ids = `CHARACTER SET utf8mb4 COLLATE ${await idCollation(qr)}`;
    await qr.query(`
      CREATE TABLE IF NOT EXISTS conversation (
        id VARCHAR(128) ${ids} NOT NULL,
        created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (id)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    await qr.query(`
      CREATE TABLE IF NOT EXISTS conversation_member (
        conversation_id VARCHAR(128) ${ids} NOT NULL,
        user_id VARCHAR(128) ${ids} NOT NULL,
        pos INT NOT NULL,
        PRIMARY KEY (conversation_id, user_id),
        CONSTRAINT fk_conversation_member_conversation
          FOREIGN KEY (conversation_id) REFERENCES conversation (id) ON DELETE CASCADE
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.query(`DROP TABLE IF EXISTS conversation_member`);
    await qr.query(`DROP TABLE IF EXISTS conversation`);
  }
}
