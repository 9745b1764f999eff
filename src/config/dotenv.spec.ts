import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDotEnv } from './dotenv';

describe('loadDotEnv', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-dotenv-'));

  it('reads the file into process.env without overriding what is already set', () => {
    const file = join(dir, '.env');
    writeFileSync(file, 'RELAY_DOTENV_A=from-file\nRELAY_DOTENV_B=from-file\n');
    const env: NodeJS.ProcessEnv = { RELAY_DOTENV_B: 'from-env' };
    expect(loadDotEnv(file, env)).toBe(true);
    expect(env).toEqual({ RELAY_DOTENV_A: 'from-file', RELAY_DOTENV_B: 'from-env' });
  });

  it('is a no-op when there is no file', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(loadDotEnv(join(dir, 'missing.env'), env)).toBe(false);
    expect(env).toEqual({});
  });
});
