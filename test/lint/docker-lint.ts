import Ajv from 'ajv';
import { validate, ValidationSeverity, ValidatorSettings } from 'dockerfile-utils';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';

/**
 * Static checks for docker/ that need no Docker engine (CI has none): the Dockerfile through
 * dockerfile-utils (the VS Code Docker extension's validator, every rule an error) plus a few
 * hadolint-style rules, and compose.yml against the Compose Specification's JSON schema
 * (docker/compose-spec.json, vendored unchanged from compose-spec/compose-spec, Apache-2.0, at
 * commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6) plus the references the schema
 * cannot see: files on disk, services named in depends_on, healthchecks behind service_healthy.
 * Each returns one line per problem; none = clean.
 */

const STRICT: ValidatorSettings = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

interface Instruction {
  line: number;
  keyword: string;
  args: string;
}

/** Instructions with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current: Instruction | null = null;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (current === null && (line === '' || line.startsWith('#'))) return;
    if (current !== null && line.startsWith('#')) return;
    const continued = line.endsWith('\\');
    const body = continued ? line.slice(0, -1) : line;
    if (current === null) {
      const [keyword, ...rest] = body.split(/\s+/);
      current = { line: i + 1, keyword: keyword.toUpperCase(), args: rest.join(' ') };
    } else {
      current.args = `${current.args} ${body}`.trim();
    }
    if (!continued) {
      out.push(current);
      current = null;
    }
  });
  return out;
}

/** `dockerfile`'s problems; COPY sources are looked up under `context` (the build context). */
export function lintDockerfile(text: string, context: string): string[] {
  const problems = validate(text, STRICT).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
  const all = instructions(text);
  const stages = all.filter((i) => i.keyword === 'FROM').map((i) => i.args.split(/\s+/)[2]?.toLowerCase());
  const lastFrom = all.map((i) => i.keyword).lastIndexOf('FROM');
  const final = all.slice(lastFrom);
  for (const i of all) {
    const at = `line ${i.line}: ${i.keyword}`;
    if (i.keyword === 'FROM') {
      const image = i.args.split(/\s+/).find((a) => !a.startsWith('--')) ?? '';
      const tagged = /@sha256:|:[^/]+$/.test(image);
      if (!stages.includes(image.toLowerCase()) && (!tagged || image.endsWith(':latest')))
        problems.push(`${at} ${image} needs a pinned tag (not latest)`);
    }
    if (i.keyword === 'ADD' && !/https?:\/\//.test(i.args)) problems.push(`${at}: use COPY for local files`);
    if ((i.keyword === 'CMD' || i.keyword === 'ENTRYPOINT') && !i.args.startsWith('['))
      problems.push(`${at} in shell form: signals would go to /bin/sh, not node (use the JSON form)`);
    if (i.keyword === 'RUN' && /\bnpm (install|i)\b/.test(i.args))
      problems.push(`${at}: npm install ignores the lockfile; use npm ci`);
    if (i.keyword === 'COPY' && !/--from=/.test(i.args)) {
      const paths = i.args.split(/\s+/).filter((a) => !a.startsWith('--'));
      for (const src of paths.slice(0, -1))
        if (!/[*?]/.test(src) && !existsSync(join(context, src)))
          problems.push(`${at} ${src}: not in the build context`);
    }
  }
  const user = final.filter((i) => i.keyword === 'USER').pop();
  if (!user || /^(root|0)(:|$)/.test(user.args)) problems.push('final stage runs as root (add USER)');
  if (!final.some((i) => i.keyword === 'HEALTHCHECK')) problems.push('final stage has no HEALTHCHECK');
  return problems;
}

type Service = {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  env_file?: string | (string | { path: string })[];
  volumes?: (string | { type?: string; source?: string })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: unknown; disable?: boolean };
};

let schemaCheck: ReturnType<Ajv['compile']> | undefined;

/** `compose.yml`'s problems; relative paths resolve against `dir` (the compose file's folder), as Compose does. */
export function lintCompose(text: string, dir: string, schemaPath: string): string[] {
  if (!schemaCheck) {
    // The schema names draft-07 by its https URL, which Ajv (draft-07 built in) only knows as http.
    const { $schema: _meta, ...schema } = JSON.parse(readFileSync(schemaPath, 'utf8')) as Record<
      string,
      unknown
    >;
    schemaCheck = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(schema);
  }
  // YAML 1.1 merge keys (`<<: *relay`) are part of the Compose format.
  const doc = parse(text, { merge: true }) as { services?: Record<string, Service> };
  const problems: string[] = [];
  if (!schemaCheck(doc))
    for (const e of schemaCheck.errors ?? []) problems.push(`${e.instancePath || '/'}: ${e.message}`);
  const services = doc?.services ?? {};
  if (Object.keys(services).length === 0) problems.push('no services');
  const file = (what: string, path: string, base = dir) => {
    // ${VAR} paths are the user's to supply; absolute ones live on the Docker host.
    if (!path.includes('$') && !isAbsolute(path) && !existsSync(resolve(base, path)))
      problems.push(`${what}: ${path} does not exist`);
  };
  for (const [name, s] of Object.entries(services)) {
    if (!s.image && !s.build) problems.push(`${name}: neither image nor build`);
    if (s.build) {
      const build = typeof s.build === 'string' ? { context: s.build } : s.build;
      const context = resolve(dir, build.context ?? '.');
      file(`${name} build context`, build.context ?? '.');
      file(`${name} dockerfile`, build.dockerfile ?? 'Dockerfile', context);
    }
    const envFiles = s.env_file === undefined ? [] : Array.isArray(s.env_file) ? s.env_file : [s.env_file];
    for (const f of envFiles) file(`${name} env_file`, typeof f === 'string' ? f : f.path);
    for (const v of s.volumes ?? []) {
      const source = typeof v === 'string' ? v.split(':')[0] : v.type === 'bind' ? v.source : undefined;
      if (source && /^[./~]/.test(source)) file(`${name} volume`, source);
    }
    const deps: Record<string, { condition?: string }> = Array.isArray(s.depends_on)
      ? Object.fromEntries(s.depends_on.map((d) => [d, {}]))
      : (s.depends_on ?? {});
    for (const [dep, how] of Object.entries(deps)) {
      if (!services[dep]) problems.push(`${name} depends on ${dep}, which is not a service`);
      else if (
        how.condition === 'service_healthy' &&
        (!services[dep].healthcheck?.test || services[dep].healthcheck?.disable)
      )
        problems.push(`${name} waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
    }
  }
  return problems;
}
