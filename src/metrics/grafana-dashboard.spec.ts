import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetricsService } from './metrics.service';

/** docker/grafana-dashboard.json must chart every relay series and only series that exist. */
describe('Grafana dashboard', () => {
  const dashboard = readFileSync(join(__dirname, '../../docker/grafana-dashboard.json'), 'utf8');
  const exprs = [...dashboard.matchAll(/"expr": "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);

  it('charts every relay_* series', async () => {
    const names = (await new MetricsService().registry.getMetricsAsJSON())
      .map((m) => m.name)
      .filter((n) => n.startsWith('relay_'));
    expect(names.length).toBeGreaterThan(15);
    expect(names.filter((n) => !exprs.some((e) => e.includes(n)))).toEqual([]);
  });

  it('names no relay_* series that does not exist', async () => {
    const names = new Set((await new MetricsService().registry.getMetricsAsJSON()).map((m) => m.name));
    const used = exprs.flatMap((e) =>
      [...e.matchAll(/\b(relay_\w+?)(?:_bucket|_count|_sum)?\{/g)].map((m) => m[1]),
    );
    expect(used.filter((n) => !names.has(n))).toEqual([]);
  });
});
