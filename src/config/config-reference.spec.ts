import { getMetadataStorage } from 'class-validator';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readmeTableCells, renderEnvExample, renderEnvTable, tableCells } from './config-reference';
import { ENV_DOCS, EnvVars } from './env.validation';

const root = join(__dirname, '../..');

describe('configuration reference', () => {
  it('documents every validated variable exactly once', () => {
    const validated = new Set(
      getMetadataStorage()
        .getTargetValidationMetadatas(EnvVars, '', true, false)
        .map((m) => m.propertyName),
    );
    const documented = ENV_DOCS.map((d) => d.name);
    expect(new Set(documented).size).toBe(documented.length);
    expect([...validated].sort()).toEqual([...documented].sort());
  });

  it('README table and .env.example are what npm run config:docs generates', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    expect(readmeTableCells(readme)).toEqual(tableCells(renderEnvTable()));
    expect(renderEnvExample()).toBe(readFileSync(join(root, '.env.example'), 'utf8'));
  });

  it('the example is a valid production configuration except for its placeholder secrets', () => {
    const example = Object.fromEntries(ENV_DOCS.filter((d) => d.example).map((d) => [d.name, d.example]));
    expect(example.JWT_SECRET).toBe('change-me');
    // Everything but the refused placeholders passes the schema.
    const { loadConfig } = jest.requireActual<typeof import('./app-config')>('./app-config');
    expect(() => loadConfig(example)).toThrow(/JWT_SECRET is a placeholder/);
    const strong = 'x'.repeat(48);
    expect(loadConfig({ ...example, JWT_SECRET: strong, ADMIN_API_KEY: strong }).engines.bus).toBe('kafka');
  });
});
