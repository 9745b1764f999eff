import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLIENT_FRAME_SCHEMAS, CLOSE, ERROR_CODES } from '@relay/protocol';
import {
  CLIENT_PROTOCOL_FILE,
  renderClientProtocol,
} from '../../packages/protocol/scripts/client-protocol.render';

const root = join(__dirname, '../..');

/** First-column cells of the table under `heading` (up to the next heading), backticks removed. */
function firstColumn(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`docs/protocol.md has no "${heading}"`);
  const rest = markdown.slice(start + heading.length + 2);
  const next = rest.search(/\n#{1,6} /);
  const section = next < 0 ? rest : rest.slice(0, next);
  const rows = section.split('\n').filter((line) => line.startsWith('|'));
  // Skip the header row and the |---| separator.
  return rows.slice(2).map((row) => row.split('|')[1].trim().replace(/`/g, ''));
}

describe('packages/protocol is the one definition', () => {
  it('the SDK carries the current copy (run npm run protocol:generate when this fails)', () => {
    expect(readFileSync(join(root, CLIENT_PROTOCOL_FILE), 'utf8')).toBe(renderClientProtocol(root));
  });

  describe('docs/protocol.md lists exactly what the package defines', () => {
    const doc = readFileSync(join(root, 'docs/protocol.md'), 'utf8');

    it('error codes', () => {
      expect(firstColumn(doc, '### Errors (`error.payload.code`)').sort()).toEqual([...ERROR_CODES].sort());
    });

    it('close codes', () => {
      const documented = firstColumn(doc, '### Close codes').map(Number);
      expect(documented.sort()).toEqual(Object.values(CLOSE).sort());
    });

    it('client frame types', () => {
      expect(firstColumn(doc, '## Client → server').sort()).toEqual(Object.keys(CLIENT_FRAME_SCHEMAS).sort());
    });
  });
});
