import { startTestApp, TestApp } from '../support/test-app';

interface Operation {
  summary?: string;
  responses?: Record<string, { description?: string }>;
}
type Document = { paths: Record<string, Record<string, Operation>> };
interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
}

/** Swagger's own routes (the document and the UI's assets). */
const ownRoute = (path: string) => path === '/openapi.json' || path === '/docs' || path.startsWith('/docs/');

/** Every (method, path) Express serves, paths in OpenAPI spelling (`:id` -> `{id}`). */
function servedRoutes(t: TestApp): string[] {
  const express = t.app.getHttpAdapter().getInstance() as {
    router?: { stack: Layer[] };
    _router?: { stack: Layer[] };
  };
  const stack = (express.router ?? express._router)!.stack;
  const out = new Set<string>();
  for (const layer of stack) {
    if (!layer.route) continue;
    const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
    for (const path of paths) {
      if (ownRoute(path)) continue;
      for (const method of Object.keys(layer.route.methods)) {
        if (method === '_all') continue;
        out.add(`${method.toUpperCase()} ${path.replace(/:(\w+)/g, '{$1}')}`);
      }
    }
  }
  return [...out].sort();
}

/**
 * The OpenAPI document (/openapi.json) describes every HTTP route the app serves, each decorated with
 * @ApiOperation (a summary) and at least one @ApiResponse, and nothing else. A route added without its
 * decorators fails here by name.
 */
describe('OpenAPI document in sync with the routes', () => {
  let t: TestApp;
  beforeAll(async () => {
    // Every module that has routes: both roles, the debug console on.
    t = await startTestApp({ DEBUG_CONSOLE: 'true' });
  });
  afterAll(() => t.close());

  it('documents every served route with a summary and its responses, and no route that is not served', async () => {
    const res = await fetch(`${t.http}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Document;
    expect(doc).toMatchObject({ openapi: expect.stringMatching(/^3\./) });
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    const served = servedRoutes(t);
    expect(served).toEqual(
      expect.arrayContaining([
        'POST /v1/messages',
        'POST /v1/conversations/{id}/messages',
        'GET /v1/conversations/{id}/members',
        'PUT /v1/conversations/{id}',
        'GET /health/live',
        'GET /metrics',
        'GET /console/api/tail',
      ]),
    );

    const problems: string[] = [];
    for (const route of served) {
      if (!documented.includes(route)) {
        problems.push(
          `${route} is served but missing from /openapi.json (is its controller in a loaded module?)`,
        );
        continue;
      }
      const [method, path] = route.split(' ');
      const op = doc.paths[path][method.toLowerCase()];
      if (!op.summary) problems.push(`${route} has no @ApiOperation({ summary }) in its controller`);
      const described = Object.values(op.responses ?? {}).some((r) => (r.description ?? '') !== '');
      if (!described) problems.push(`${route} has no @ApiResponse in its controller`);
    }
    for (const route of documented) {
      if (!served.includes(route)) problems.push(`${route} is in /openapi.json but not served`);
    }
    expect(problems).toEqual([]);
  });

  it('serves the UI at /docs', async () => {
    const res = await fetch(`${t.http}/docs`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('swagger-ui');
  });

  it('API_DOCS=false turns both off (404)', async () => {
    const off = await startTestApp({ API_DOCS: 'false' });
    try {
      expect((await fetch(`${off.http}/openapi.json`)).status).toBe(404);
      expect((await fetch(`${off.http}/docs`)).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
