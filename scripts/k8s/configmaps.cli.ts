import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderConfigMaps } from './configmaps';

/** `npm run k8s:config`: rewrites docker/k8s/configmaps.yaml from config/env. */
writeFileSync(join(process.cwd(), 'docker/k8s/configmaps.yaml'), renderConfigMaps(process.cwd()));
