import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `outbox.payload` becomes LONGTEXT (utf8mb4, binary collation) without a JSON check.
 *
 * MariaDB's JSON type is LONGTEXT with CHECK (json_valid(payload)), and json_valid refuses documents
 * nested deeper than 32 levels: a message the gateway accepted (the protocol allows MAX_JSON_DEPTH=64)
 * could then never be stored, and its partition would be stuck behind it. The driver writes the
 * payload with JSON.stringify and reads it back with JSON.parse (`parsePayload`), so the database
 * never needs to understand it. On MySQL 8 (native JSON) the column is converted to text as well.
 *
 * MODIFY restates the whole column definition, which drops MariaDB's column CHECK; running it again
 * changes nothing, so the migration is idempotent like the others. It rewrites the table on some
 * servers: on a large outbox, run the migrations (migrate.cli) before rolling out new nodes.
 * `down` restores the JSON type; it fails if a stored payload nests deeper than the server's JSON limit.
 */
export class OutboxPayloadText1767225600002 implements MigrationInterface {
  name = 'OutboxPayloadText1767225600002';

  async up(qr: QueryRunner): Promise<void> {
    await qr.query(
      `ALTER TABLE outbox MODIFY payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL`,
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.query(`ALTER TABLE outbox MODIFY payload JSON NOT NULL`);
  }
}
