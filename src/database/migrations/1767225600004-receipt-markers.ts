import { MigrationInterface, QueryRunner } from 'typeorm';
import { idCollation } from './id-collation';

/**
 * v1.1 receipts: one row per (conversation, member) with the highest conversation seq delivered to
 * and read by that member. Only ever moved forward (GREATEST upserts); never purged (one small row
 * per member who ever confirmed or read). Idempotent DDL, as in the other migrations.
 */
export class ReceiptMarkers1767225600004 implements MigrationInterface {
  name = 'ReceiptMarkers1767225600004';

  async up(qr: QueryRunner): Promise<void> {
    const ids = `CHARACTER SET utf8mb4 COLLATE ${await idCollation(qr)}`;
    await qr.query(`
      CREATE TABLE IF NOT EXISTS receipt_marker (
        conversation_id VARCHAR(128) ${ids} NOT NULL,
        user_id VARCHAR(128) ${ids} NOT NULL,
        delivered_seq BIGINT NOT NULL DEFAULT 0,
        read_seq BIGINT NOT NULL DEFAULT 0,
        updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (conversation_id, user_id)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.query(`DROP TABLE IF EXISTS receipt_marker`);
  }
}
