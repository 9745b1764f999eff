import Ajv from 'ajv';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CLIENT_FRAME_SCHEMAS, ERROR_CODES } from '@relay/protocol';

const docs = join(__dirname, '../../docs');
const asyncapi = parse(readFileSync(join(docs, 'asyncapi.yaml'), 'utf8')) as Record<string, unknown>;
const streamSchema = JSON.parse(readFileSync(join(docs, 'schemas/stream-record.schema.json'), 'utf8')) as {
  $id: string;
};

/** Every `$ref` string in a document, with where it is. */
function refs(node: unknown, at = '#'): { at: string; ref: string }[] {
  if (Array.isArray(node)) return node.flatMap((n, i) => refs(n, `${at}/${i}`));
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([k, v]) =>
    k === '$ref' && typeof v === 'string' ? [{ at, ref: v }] : refs(v, `${at}/${k}`),
  );
}

function pointer(doc: unknown, path: string): unknown {
  return path
    .split('/')
    .filter(Boolean)
    .reduce<unknown>(
      (n, key) => (n as Record<string, unknown> | undefined)?.[key.replace(/~1/g, '/').replace(/~0/g, '~')],
      doc,
    );
}

/**
 * docs/asyncapi.yaml (the WebSocket protocol and the event stream) is a valid AsyncAPI 3.0.0 document
 * (checked against the official JSON schema of @asyncapi/specs), lists every client frame type and
 * error code of packages/protocol, and its stream records are those of the published JSON schema.
 */
describe('AsyncAPI document (docs/asyncapi.yaml)', () => {
  it('validates against the AsyncAPI 3.0.0 schema', () => {
    // The bundled schema carries its own copy of the draft-07 meta-schema.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const spec = require('@asyncapi/specs/schemas/3.0.0.json') as object;
    const validate = new Ajv({
      strict: false,
      validateFormats: false,
      meta: false,
      validateSchema: false,
    }).compile(spec);
    const ok = validate(asyncapi);
    expect(ok ? [] : validate.errors?.slice(0, 5)).toEqual([]);
    // The validator does catch a broken document.
    expect(validate({ ...asyncapi, channels: { ws: { address: 1 } } })).toBe(false);
  });

  it('every $ref resolves (inside the document or to a file of docs/)', () => {
    const broken = refs(asyncapi).filter(({ ref }) => {
      const [file, path = ''] = ref.split('#');
      const target = file
        ? (JSON.parse(readFileSync(join(docs, file), 'utf8')) as unknown)
        : (asyncapi as unknown);
      return pointer(target, path) === undefined;
    });
    expect(broken).toEqual([]);
  });

  it('lists every client frame type and error code of the protocol package', () => {
    const messages = Object.keys(pointer(asyncapi, '/channels/ws/messages') as object);
    const missing = Object.keys(CLIENT_FRAME_SCHEMAS).filter((t) => !messages.includes(t));
    expect(missing).toEqual([]);
    const codes = pointer(
      asyncapi,
      '/components/messages/error/payload/properties/payload/properties/code/enum',
    );
    expect(codes).toEqual([...ERROR_CODES]);
  });

  it("the stream's examples are valid records of docs/schemas/stream-record.schema.json", () => {
    const ajv = new Ajv({ strict: false });
    ajv.addSchema(streamSchema);
    const record = ajv.getSchema(streamSchema.$id)!;
    const stream = pointer(asyncapi, '/components/messages') as Record<
      string,
      { payload: { $ref?: string }; examples?: { payload: unknown }[] }
    >;
    let checked = 0;
    for (const [name, m] of Object.entries(stream)) {
      const ref = m.payload.$ref;
      if (!ref?.startsWith('./schemas/stream-record.schema.json')) continue;
      const kind = ajv.getSchema(`${streamSchema.$id}${ref.slice(ref.indexOf('#'))}`)!;
      for (const e of m.examples ?? []) {
        expect([name, kind(e.payload), record(e.payload)]).toEqual([name, true, true]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(4);
    // A record of an unknown kind is valid (readers skip it); a message without its id is not.
    expect(record({ schema_version: 1, kind: 'hologram', conversation_id: 'c' })).toBe(true);
    expect(
      record({
        schema_version: 1,
        kind: 'message',
        conversation_id: 'c',
        from: 'a',
        ts: 1,
        body: 1,
        ref: 'r',
      }),
    ).toBe(false);
  });
});
