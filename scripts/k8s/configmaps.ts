import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { stringify } from 'yaml';

/**
 * The Kubernetes ConfigMaps of docker/k8s/configmaps.yaml, from the top-level config/: one per env preset,
 * so the manifests and docker/compose.yml read the same settings. Run by `npm run k8s:config`
 * (scripts/k8s/configmaps.cli.ts); test/lint/k8s.spec.ts fails when the file is stale.
 */
export const CONFIGMAP_SOURCES = [
  { name: 'relay-production', file: 'config/env/production.env' },
  { name: 'relay-gateway', file: 'config/env/gateway.env' },
  { name: 'relay-router', file: 'config/env/router.env' },
] as const;

export function renderConfigMaps(root: string): string {
  const docs = CONFIGMAP_SOURCES.map(({ name, file }) =>
    stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, annotations: { 'relay.dev/source': file } },
      data: parseEnv(readFileSync(join(root, file), 'utf8')),
    }),
  );
  return `# Generated from config/env by \`npm run k8s:config\`: edit those files, not this one.\n${docs.join('---\n')}`;
}
