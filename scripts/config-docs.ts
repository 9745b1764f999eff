import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { renderEnvExample, withEnvTable } from '../src/config/config-reference';

/**
 * `npm run config:docs`: rewrites the README's configuration table and `.env.example` from the env
 * schema. `--check` only reports whether they are current (exit 1 if not).
 */
async function main(): Promise<void> {
  const root = process.cwd();
  const check = process.argv.includes('--check');
  const readme = join(root, 'README.md');
  const prettierOptions = { ...(await resolveConfig(readme)), parser: 'markdown' };
  const targets = [
    { file: readme, render: (old: string) => format(withEnvTable(old), prettierOptions) },
    { file: join(root, '.env.example'), render: async () => renderEnvExample() },
  ];
  let stale = 0;
  for (const { file, render } of targets) {
    const old = readFileSync(file, 'utf8');
    const next = await render(old);
    if (next === old) continue;
    stale++;
    if (check) console.error(`${file} is out of date: run npm run config:docs`);
    else writeFileSync(file, next);
  }
  if (check && stale > 0) process.exit(1);
}

void main();
