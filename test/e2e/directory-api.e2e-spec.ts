/**
 * Bounds of the directory HTTP API (embedded engine): id charset and length, members per conversation,
 * request body size. Each refusal is a clear 4xx; nothing is stored.
 */
import { directoryBodyLimit } from '../../src/directory/directory.controller';
import { startTestApp, TestApp } from '../support/test-app';

const MAX = 50;
const longId = (i: number) => `${String(i).padStart(4, '0')}${'m'.repeat(124)}`; // 128 chars

describe('directory API bounds', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ MAX_CONVERSATION_MEMBERS: String(MAX) });
  });
  afterAll(() => t.close());

  const put = (id: string, body: unknown, raw?: string) =>
    fetch(`${t.http}/v1/conversations/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: raw ?? JSON.stringify(body),
    });
  const message = async (res: Response) => JSON.stringify(await res.json());

  it.each([
    ['a space', encodeURIComponent('team room')],
    ['a slash', encodeURIComponent('a/b')],
    ['a dollar sign', 'x$y'],
    ['non-ASCII letters', encodeURIComponent('équipe')],
    ['129 characters', 'c'.repeat(129)],
  ])('refuses a conversation id with %s (400) on PUT, GET and DELETE', async (_name, id) => {
    const res = await put(id, { members: ['a'] });
    expect(res.status).toBe(400);
    expect(await message(res)).toContain('conversation id must match');
    expect((await fetch(`${t.http}/v1/conversations/${id}`)).status).toBe(400);
    expect((await fetch(`${t.http}/v1/conversations/${id}`, { method: 'DELETE' })).status).toBe(400);
  });

  it('accepts ids using every allowed character class', async () => {
    const id = 'Aa0_.:@-z';
    expect((await put(id, { members: ['user@example.com', 'u_1.2:3-x'] })).status).toBe(200);
    expect(await (await fetch(`${t.http}/v1/conversations/${id}`)).json()).toEqual({
      id,
      members: ['user@example.com', 'u_1.2:3-x'],
    });
  });

  it.each([
    ['an empty id', ''],
    ['a space', 'jane doe'],
    ['129 characters', 'u'.repeat(129)],
    ['a control character', 'jane\n'],
    ['a number', 42],
    ['null', null],
  ])('refuses a member that is %s (400) and stores nothing', async (_name, bad) => {
    const res = await put('bad-members', { members: ['ok', bad] });
    expect(res.status).toBe(400);
    expect(await message(res)).toContain('member');
    expect((await fetch(`${t.http}/v1/conversations/bad-members`)).status).toBe(404);
  });

  it(`accepts exactly MAX_CONVERSATION_MEMBERS (${MAX}) of the longest ids, pretty-printed`, async () => {
    const members = Array.from({ length: MAX }, (_, i) => longId(i));
    const res = await put('full', undefined, JSON.stringify({ members }, null, 2));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { members: string[] }).members).toHaveLength(MAX);
  });

  it('refuses one member more with 400 and says what the limit is', async () => {
    const members = Array.from({ length: MAX + 1 }, (_, i) => longId(i));
    const res = await put('too-many', { members });
    expect(res.status).toBe(400);
    expect(await message(res)).toContain(`at most ${MAX}`);
    expect((await fetch(`${t.http}/v1/conversations/too-many`)).status).toBe(404);
  });

  it('refuses a body over the limit derived from MAX_CONVERSATION_MEMBERS with 413, unparsed', async () => {
    const limit = directoryBodyLimit(MAX);
    const body = JSON.stringify({ members: ['a'], padding: 'x'.repeat(limit) });
    const res = await put('huge', undefined, body);
    expect(res.status).toBe(413);
    expect(await message(res)).toContain(`larger than ${limit} bytes`);
    expect((await fetch(`${t.http}/v1/conversations/huge`)).status).toBe(404);
  });

  it('the default limit fits 10 000 members of the longest ids', () => {
    const members = Array.from(
      { length: 10_000 },
      (_, i) => `${String(i).padStart(5, '0')}${'m'.repeat(123)}`,
    );
    expect(JSON.stringify({ members }, null, 2).length).toBeLessThanOrEqual(directoryBodyLimit(10_000));
  });
});
