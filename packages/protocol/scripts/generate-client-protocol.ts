/**
 * `npm run protocol:generate`: writes the SDK's copy of the protocol from this package. With
 * `--check` it only reports whether the copy is current (exit 1 if not).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLIENT_PROTOCOL_FILE, renderClientProtocol } from './client-protocol.render.ts';

const root = join(import.meta.dirname, '../../..');
const file = join(root, CLIENT_PROTOCOL_FILE);
const next = renderClientProtocol(root);
if (!existsSync(file) || readFileSync(file, 'utf8') !== next) {
  if (process.argv.includes('--check')) {
    console.error(`${CLIENT_PROTOCOL_FILE} is out of date: run npm run protocol:generate`);
    process.exit(1);
  }
  writeFileSync(file, next);
}
