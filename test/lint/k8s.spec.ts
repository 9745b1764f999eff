import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { renderConfigMaps } from '../../scripts/k8s/configmaps';

/**
 * docker/k8s is checked here because CI has no cluster: every manifest against the Kubernetes API schemas
 * (kubernetes-models), then the rules the manifests exist for (probes, drain, disruption budget, autoscaling,
 * routers never beyond the partitions, ConfigMaps generated from config/).
 */
const ROOT = join(__dirname, '..', '..');
const K8S = join(ROOT, 'docker', 'k8s');

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };
interface Container {
  name: string;
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}
interface Workload extends Manifest {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: { containers: Container[]; terminationGracePeriodSeconds?: number };
    };
  };
}

/** kubernetes-models ships ESM with import-only exports; Node 24 requires ESM by file path. */
function modelClass(apiVersion: string, kind: string): new (o: unknown) => { validate(): void } {
  const dir = apiVersion.includes('/') ? apiVersion : `v1`;
  const file = join(ROOT, 'node_modules', 'kubernetes-models', dir, `${kind}.js`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(file) as Record<string, new (o: unknown) => { validate(): void }>;
  return mod[kind];
}

const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
const manifests: Manifest[] = files.flatMap((f) =>
  parseAllDocuments(readFileSync(join(K8S, f), 'utf8')).map((d) => d.toJS() as Manifest),
);
const find = <T extends Manifest>(kind: string, name: string): T => {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`docker/k8s has no ${kind} ${name}`);
  return m as T;
};
const productionEnv = parseEnv(readFileSync(join(ROOT, 'config/env/production.env'), 'utf8'));

describe('docker/k8s', () => {
  it.each(manifests.map((m) => [`${m.kind} ${m.metadata.name}`, m] as const))(
    '%s is valid against the Kubernetes schema',
    (_name, m) => {
      const Model = modelClass(m.apiVersion, m.kind);
      expect(() => new Model(m).validate()).not.toThrow();
    },
  );

  it('the schema check catches a broken manifest', () => {
    const gateway = structuredClone(find<Workload>('Deployment', 'relay-gateway'));
    (gateway.spec as unknown as Record<string, unknown>).replicas = 'two';
    const Model = modelClass('apps/v1', 'Deployment');
    expect(() => new Model(gateway).validate()).toThrow(/replicas/);
  });

  it('kustomization lists every manifest file', () => {
    const k = parseAllDocuments(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8'))[0].toJS() as {
      resources: string[];
    };
    expect([...k.resources].sort()).toEqual([...files].sort());
  });

  it('configmaps.yaml is generated from config/env (npm run k8s:config)', () => {
    expect(readFileSync(join(K8S, 'configmaps.yaml'), 'utf8')).toBe(renderConfigMaps(ROOT));
  });

  it('holds no Secret: secrets are created in the cluster, never committed', () => {
    expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
  });

  it('every workload selects its own pods and reads only ConfigMaps defined here', () => {
    const configMaps = new Set(manifests.filter((m) => m.kind === 'ConfigMap').map((m) => m.metadata.name));
    for (const w of manifests.filter((m) => m.kind === 'Deployment') as Workload[]) {
      expect(w.spec.template.metadata.labels).toMatchObject(w.spec.selector.matchLabels);
      for (const c of w.spec.template.spec.containers) {
        for (const ref of c.envFrom ?? []) {
          if (ref.configMapRef) expect(configMaps).toContain(ref.configMapRef.name);
        }
      }
    }
  });

  it('gateways: ready on /health/ready, drained before SIGTERM, one down at a time, scaled on connections', () => {
    const gateway = find<Workload>('Deployment', 'relay-gateway');
    const [c] = gateway.spec.template.spec.containers;
    expect(c.readinessProbe?.httpGet?.path).toBe('/health/ready');
    expect(c.livenessProbe?.httpGet?.path).toBe('/health/live');
    expect(c.lifecycle?.preStop?.exec?.command.length).toBeGreaterThan(0);
    // The grace period covers preStop plus the SIGTERM drain.
    const grace = gateway.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    expect(grace * 1000).toBeGreaterThan(Number(productionEnv.SHUTDOWN_TIMEOUT_MS) + 5_000);

    const pdb = find<Manifest & { spec: { selector: { matchLabels: Record<string, string> } } }>(
      'PodDisruptionBudget',
      'relay-gateway',
    );
    expect(gateway.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);

    const hpa = find<
      Manifest & {
        spec: {
          scaleTargetRef: { kind: string; name: string };
          metrics: { type: string; pods?: { metric: { name: string } } }[];
        };
      }
    >('HorizontalPodAutoscaler', 'relay-gateway');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'relay-gateway' });
    expect(hpa.spec.metrics).toContainEqual(
      expect.objectContaining({
        type: 'Pods',
        pods: expect.objectContaining({ metric: { name: 'relay_connections' } }),
      }),
    );
  });

  it('routers never outnumber the ingress partitions', () => {
    const partitions = Number(productionEnv.KAFKA_PARTITIONS);
    expect(partitions).toBeGreaterThan(0);
    expect(find<Workload>('Deployment', 'relay-router').spec.replicas).toBeLessThanOrEqual(partitions);
    const hpa = find<Manifest & { spec: { maxReplicas: number; scaleTargetRef: { name: string } } }>(
      'HorizontalPodAutoscaler',
      'relay-router',
    );
    expect(hpa.spec.scaleTargetRef.name).toBe('relay-router');
    expect(hpa.spec.maxReplicas).toBeLessThanOrEqual(partitions);
  });
});
