import { MigrationInterface, QueryRunner } from 'typeorm';
import { idCollation } from './id-collation';

const COPY_CHUNK = 1000;

/**
 * The outbox stores each entry once (protocol v1.1: per-conversation order numbers, receipts).
 *
 * - `outbox_entry`: one row per message or receipt, keyed by its id: the payload (LONGTEXT, see
 *   1767225600002), the conversation, the message's conversation order number `conv_seq` (NULL for
 *   receipts; UNIQUE(conversation_id, conv_seq) also serves the bounded sender look-up of large
 *   conversations' receipts) and `sender`. expires_at is the latest of its deliveries'.
 * - `outbox_delivery`: one small row per (recipient, entry): the recipient's gapless seq (the cursor)
 *   pointing at the entry. UNIQUE(user_id, seq) serves replay, UNIQUE(user_id, entry_id) idempotency.
 * - `outbox_head`: the highest committed seq per user (scope 'u') and per conversation (scope 'c');
 *   its row locks serialise the writers of one user / one conversation. Never purged.
 *
 * Existing data moves over: every `outbox` row becomes a delivery (same user, seq and expiry), each
 * message once an entry; messages get conversation order numbers in message-id (ULID, creation)
 * order, and the conversation heads follow; `outbox_user_seq` becomes the 'u' heads. Then the old
 * tables are dropped. Every step is idempotent (IF NOT EXISTS, INSERT IGNORE, GREATEST), so an
 * interrupted migration can run again. Run it (migrate.cli) before rolling out nodes of this version:
 * older routers cannot write the new tables and retry until they are replaced (nothing is lost).
 * `down` rebuilds the old tables from the new ones (receipts are dropped: old servers cannot send them).
 */
export class OutboxSharedEntries1767225600003 implements MigrationInterface {
  name = 'OutboxSharedEntries1767225600003';

  async up(qr: QueryRunner): Promise<void> {
    const ids = `CHARACTER SET utf8mb4 COLLATE ${await idCollation(qr)}`;
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox_entry (
        entry_id VARCHAR(64) ${ids} NOT NULL,
        conversation_id VARCHAR(128) ${ids} NOT NULL,
        conv_seq BIGINT NULL,
        sender VARCHAR(128) ${ids} NULL,
        payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        expires_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (entry_id),
        UNIQUE KEY uq_outbox_entry_conv_seq (conversation_id, conv_seq),
        KEY ix_outbox_entry_expires_at (expires_at)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox_delivery (
        id BIGINT NOT NULL AUTO_INCREMENT,
        user_id VARCHAR(128) ${ids} NOT NULL,
        seq BIGINT NOT NULL,
        entry_id VARCHAR(64) ${ids} NOT NULL,
        created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        expires_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (id),
        UNIQUE KEY uq_outbox_delivery_user_seq (user_id, seq),
        UNIQUE KEY uq_outbox_delivery_user_entry (user_id, entry_id),
        KEY ix_outbox_delivery_expires_at (expires_at)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox_head (
        scope CHAR(1) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        id VARCHAR(128) ${ids} NOT NULL,
        seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, id)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);

    if (await hasTable(qr, 'outbox')) {
      await copyOldOutbox(qr);
      // Messages in id (creation) order, numbered after whatever the conversation already has.
      await qr.query(`
        UPDATE outbox_entry e JOIN (
          SELECT m.entry_id, COALESCE(h.seq, 0) + ROW_NUMBER() OVER (PARTITION BY m.conversation_id ORDER BY m.entry_id) AS n
          FROM outbox_entry m LEFT JOIN outbox_head h ON h.scope = 'c' AND h.id = m.conversation_id
          WHERE m.conv_seq IS NULL AND m.sender IS NOT NULL
        ) r ON r.entry_id = e.entry_id
        SET e.conv_seq = r.n`);
      await qr.query(`
        INSERT INTO outbox_head (scope, id, seq)
        SELECT 'c', conversation_id, MAX(conv_seq) FROM outbox_entry WHERE conv_seq IS NOT NULL GROUP BY conversation_id
        ON DUPLICATE KEY UPDATE outbox_head.seq = GREATEST(outbox_head.seq, VALUES(seq))`);
    }
    if (await hasTable(qr, 'outbox_user_seq')) {
      await qr.query(`
        INSERT INTO outbox_head (scope, id, seq) SELECT 'u', user_id, seq FROM outbox_user_seq
        ON DUPLICATE KEY UPDATE outbox_head.seq = GREATEST(outbox_head.seq, VALUES(seq))`);
    }
    await qr.query(`DROP TABLE IF EXISTS outbox`);
    await qr.query(`DROP TABLE IF EXISTS outbox_user_seq`);
  }

  async down(qr: QueryRunner): Promise<void> {
    const ids = `CHARACTER SET utf8mb4 COLLATE ${await idCollation(qr)}`;
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox_user_seq (
        user_id VARCHAR(128) ${ids} NOT NULL,
        seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    await qr.query(`
      CREATE TABLE IF NOT EXISTS outbox (
        id BIGINT NOT NULL AUTO_INCREMENT,
        user_id VARCHAR(128) ${ids} NOT NULL,
        seq BIGINT NOT NULL,
        message_id VARCHAR(64) ${ids} NOT NULL,
        payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        expires_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (id),
        UNIQUE KEY uq_outbox_user_seq (user_id, seq),
        UNIQUE KEY uq_outbox_user_message (user_id, message_id),
        KEY ix_outbox_expires_at (expires_at)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
    if (await hasTable(qr, 'outbox_delivery')) {
      await qr.query(`
        INSERT IGNORE INTO outbox (user_id, seq, message_id, payload, created_at, expires_at)
        SELECT d.user_id, d.seq, d.entry_id, e.payload, d.created_at, d.expires_at
        FROM outbox_delivery d JOIN outbox_entry e ON e.entry_id = d.entry_id
        WHERE e.conv_seq IS NOT NULL ORDER BY d.id`);
    }
    if (await hasTable(qr, 'outbox_head')) {
      await qr.query(`
        INSERT INTO outbox_user_seq (user_id, seq) SELECT id, seq FROM outbox_head WHERE scope = 'u'
        ON DUPLICATE KEY UPDATE outbox_user_seq.seq = GREATEST(outbox_user_seq.seq, VALUES(seq))`);
    }
    await qr.query(`DROP TABLE IF EXISTS outbox_delivery`);
    await qr.query(`DROP TABLE IF EXISTS outbox_entry`);
    await qr.query(`DROP TABLE IF EXISTS outbox_head`);
  }
}

async function hasTable(qr: QueryRunner, name: string): Promise<boolean> {
  const rows: unknown[] = await qr.query(
    `SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
    [name],
  );
  return rows.length > 0;
}

/** Old rows in id order, a chunk at a time: the payload is parsed here (the database need not read JSON). */
async function copyOldOutbox(qr: QueryRunner): Promise<void> {
  for (let after = 0; ;) {
    const rows: {
      id: number | string;
      user_id: string;
      seq: number | string;
      message_id: string;
      payload: string | Buffer;
      created_at: Date;
      expires_at: Date;
    }[] = await qr.query(
      `SELECT id, user_id, seq, message_id, payload, created_at, expires_at FROM outbox WHERE id > ? ORDER BY id LIMIT ?`,
      [after, COPY_CHUNK],
    );
    if (rows.length === 0) return;
    after = Number(rows[rows.length - 1].id);
    const entries: unknown[] = [];
    for (const r of rows) {
      const text = typeof r.payload === 'string' ? r.payload : r.payload.toString('utf8');
      const { conversation, sender } = headerOf(text);
      entries.push(r.message_id, conversation, sender, text, r.created_at, r.expires_at);
    }
    await qr.query(
      `INSERT INTO outbox_entry (entry_id, conversation_id, sender, payload, created_at, expires_at)
       VALUES ${rows.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}
       ON DUPLICATE KEY UPDATE expires_at = GREATEST(expires_at, VALUES(expires_at))`,
      entries,
    );
    await qr.query(
      `INSERT IGNORE INTO outbox_delivery (user_id, seq, entry_id, created_at, expires_at)
       VALUES ${rows.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
      rows.flatMap((r) => [r.user_id, r.seq, r.message_id, r.created_at, r.expires_at]),
    );
  }
}

function headerOf(text: string): { conversation: string; sender: string } {
  try {
    const e = JSON.parse(text) as { conversation_id?: unknown; from?: unknown };
    return { conversation: String(e.conversation_id ?? ''), sender: String(e.from ?? '') };
  } catch {
    return { conversation: '', sender: '' };
  }
}
