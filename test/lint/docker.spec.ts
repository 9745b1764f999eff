import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lintCompose, lintDockerfile } from './docker-lint';

/** docker/ is linted here because CI has no Docker engine to build or `compose config` with. */
const ROOT = join(__dirname, '..', '..');
const DOCKER = join(ROOT, 'docker');
const SCHEMA = join(DOCKER, 'compose-spec.json');
const read = (name: string) => readFileSync(join(DOCKER, name), 'utf8');

describe('docker/Dockerfile', () => {
  it('is clean', () => {
    expect(lintDockerfile(read('Dockerfile'), ROOT)).toEqual([]);
  });

  it('reports what the linter and the house rules catch', () => {
    const bad = [
      'FROM node AS build',
      'MAINTAINER someone',
      'run npm install',
      'COPY no-such-dir ./',
      'FROM node:24-trixie-slim',
      'ADD src src',
      'EXPOSE web',
      'HEALTHCHECK --interval=10 CMD true',
      'CMD node dist/main.js',
    ].join('\n');
    const problems = lintDockerfile(bad, ROOT).join('\n');
    for (const expected of [
      /line 1: FROM node needs a pinned tag/,
      /line 2: MAINTAINER has been deprecated/,
      /line 3: .*uppercase/,
      /line 3: RUN: npm install ignores the lockfile/,
      /line 4: COPY no-such-dir: not in the build context/,
      /line 6: ADD: use COPY/,
      /line 7: Invalid containerPort: web/,
      /line 8: .*missing unit in duration/,
      /line 9: CMD in shell form/,
      /final stage runs as root/,
    ])
      expect(problems).toMatch(expected);
    expect(lintDockerfile('FROM node:24\nUSER node\nCMD ["node"]', ROOT)).toEqual([
      'final stage has no HEALTHCHECK',
    ]);
  });
});

describe('docker/compose.yml', () => {
  it('follows the Compose Specification and points at files that exist', () => {
    expect(lintCompose(read('compose.yml'), DOCKER, SCHEMA)).toEqual([]);
  });

  it('reports schema violations and broken references', () => {
    const bad = `
services:
  app:
    build: { context: .., dockerfile: docker/Nope.dockerfile }
    env_file: [../config/env/nope.env]
    volumes: ['./nope.cfg:/etc/nope.cfg:ro']
    depends_on: { db: { condition: service_healthy }, cache: { condition: service_started } }
    ports: [{ bad: 1 }]
  db:
    image: mysql:8.4
  worker:
    imagee: redis:7-alpine
`;
    const problems = lintCompose(bad, DOCKER, SCHEMA);
    expect(problems).toEqual(
      expect.arrayContaining([
        '/services/app/ports/0: must NOT have additional properties',
        '/services/worker: must NOT have additional properties',
        'app dockerfile: docker/Nope.dockerfile does not exist',
        'app env_file: ../config/env/nope.env does not exist',
        'app volume: ./nope.cfg does not exist',
        'app waits for db to be healthy, but db has no healthcheck',
        'app depends on cache, which is not a service',
        'worker: neither image nor build',
      ]),
    );
  });
});
