import { QueryRunner } from 'typeorm';

/**
 * Collation for ids (user, conversation, message): byte-exact and NO PAD, so `alice`, `Alice` and
 * `alice ` are three different users, as they are everywhere else in the service. The default
 * `_ci` collations would merge the first two into one outbox; PAD SPACE ones (utf8mb4_bin) the last.
 * MariaDB spells it utf8mb4_nopad_bin, MySQL 8 utf8mb4_0900_bin; utf8mb4_bin is the last resort.
 */
const PREFERRED = ['utf8mb4_nopad_bin', 'utf8mb4_0900_bin'];

export async function idCollation(qr: QueryRunner): Promise<string> {
  const rows: { name: string }[] = await qr.query(
    `SELECT COLLATION_NAME AS name FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (?, ?)`,
    PREFERRED,
  );
  const available = new Set(rows.map((r) => r.name));
  return PREFERRED.find((c) => available.has(c)) ?? 'utf8mb4_bin';
}
