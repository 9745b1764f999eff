import 'reflect-metadata';
import { loadConfig } from '../config/app-config';
import { loadDotEnv } from '../config/dotenv';
import { ConfigError } from '../config/env.validation';
import { mintDevToken, parseTtl, TokenError } from './dev-token';

/**
 * Mints a development JWT for `?token=` with the service's own configuration (environment, then .env):
 *
 *   npm run token -- <user> [--ttl 1h]
 *
 * Prints only the token, so `TOKEN=$(npm run -s token -- alice)` works. Exit codes: 0 done, 1 refused,
 * 2 usage, 78 invalid configuration.
 */
const USAGE = 'usage: npm run token -- <user> [--ttl 90s|15m|1h|2d]';

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  let ttl: number | undefined;
  const at = args.indexOf('--ttl');
  if (at >= 0) {
    ttl = parseTtl(args[at + 1] ?? '');
    if (ttl === undefined) {
      console.error(USAGE);
      return 2;
    }
    args.splice(at, 2);
  }
  if (args.length !== 1 || args[0].startsWith('-')) {
    console.error(USAGE);
    return 2;
  }
  loadDotEnv();
  try {
    const token = await mintDevToken(loadConfig().auth, args[0], ttl);
    process.stdout.write(`${token}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 78;
    }
    if (err instanceof TokenError) {
      console.error(err.message);
      return 1;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`fatal: ${err.message}`);
    process.exit(1);
  },
);
