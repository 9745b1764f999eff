import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';

/**
 * Reads `.env` from the working directory into `env` when the file exists, as `.env.example` tells
 * people to do. Variables already set win, as with Node's own `--env-file`.
 */
export function loadDotEnv(path = '.env', env: NodeJS.ProcessEnv = process.env): boolean {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  for (const [name, value] of Object.entries(parseEnv(text))) env[name] ??= value;
  return true;
}
