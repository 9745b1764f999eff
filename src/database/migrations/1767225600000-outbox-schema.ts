import { MigrationInterface, QueryRunner } from 'typeorm';
import { idCollation } from './id-collation';

/**
 * The per-user outbox.
 *
 * - `outbox`: one row per (recipient, message). `seq` is the recipient's gapless sequence (the
 *   cursor), UNIQUE(user_id, seq) serves `readAfter`/`retention` range scans and UNIQUE(user_id,
 *   message_id) makes `append` idempotent. The design note's INDEX(user_id, id) is left out on
 *   purpose: ids follow insert order, not commit order, so no read may use them, and the extra
 *   index would cost every insert. INDEX(expires_at) serves the bounded purge.
 * - `outbox_user_seq`: the head (highest committed seq) per user; its row lock serialises the
 *   writers of one user. Rows are never purged, so heads survive expiry.
 * - `relay_meta`: small key/value facts about the store (the outbox epoch).
 *
 * DDL commits implicitly in MySQL, so every statement is idempotent (IF NOT EXISTS) and a migration
 * interrupted halfway can simply run again.
 */
export class OutboxSchema1767225600000 implements MigrationInterface {
  name = 'OutboxSchema1767225600000';

  async up(qr: QueryRunner): Promise<void> {
    const ids = `CHARACTER SET utf8mb4 COLLATE ${await idCollation(qr)}`;
    await qr.query(`
      CREATE TABLE IF NOT EXISTS relay_meta (
        name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        value VARCHAR(255) NOT NULL,
        created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (name)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox_user_seq (
        user_id VARCHAR(128) ${ids} NOT NULL,
        seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    // Both timestamps carry an explicit default so no server setting
    // (explicit_defaults_for_timestamp=OFF) turns one into ON UPDATE CURRENT_TIMESTAMP.
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox (
        id BIGINT NOT NULL AUTO_INCREMENT,
        user_id VARCHAR(128) ${ids} NOT NULL,
        seq BIGINT NOT NULL,
        message_id VARCHAR(64) ${ids} NOT NULL,
        payload JSON NOT NULL,
        created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        expires_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (id),
        UNIQUE KEY uq_outbox_user_seq (user_id, seq),
        UNIQUE KEY uq_outbox_user_message (user_id, message_id),
        KEY ix_outbox_expires_at (expires_at)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.query(`DROP TABLE IF EXISTS outbox`);
    await qr.query(`DROP TABLE IF EXISTS outbox_user_seq`);
    await qr.query(`DROP TABLE IF EXISTS relay_meta`);
  }
}
