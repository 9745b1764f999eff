import { loadConfig, parseRoles } from './app-config';
import { ConfigError } from './env.validation';

describe('roles', () => {
  it('defaults to both roles', () => {
    expect([...parseRoles(undefined)].sort()).toEqual(['gateway', 'router']);
  });
  it('accepts one role, case and spaces aside', () => {
    expect([...parseRoles(' Router ')]).toEqual(['router']);
  });
  it('names an unknown role', () => {
    expect(() => parseRoles('gateway,websocket')).toThrow(/unknown role "websocket"/);
    expect(() => parseRoles(',')).toThrow(ConfigError);
  });
});

describe('loadConfig', () => {
  const SECRET = 'x'.repeat(40);
  const KEY = 'k'.repeat(40);
  const prod = { NODE_ENV: 'production', JWT_SECRET: SECRET, ADMIN_API_KEY: KEY, ENGINE: 'production' };

  it('logs JSON in production and text elsewhere unless LOG_FORMAT says otherwise; tracing is off by default', () => {
    expect(loadConfig({}).logFormat).toBe('text');
    expect(loadConfig(prod).logFormat).toBe('json');
    expect(loadConfig({ ...prod, LOG_FORMAT: 'text' }).logFormat).toBe('text');
    expect(() => loadConfig({ LOG_FORMAT: 'xml' })).toThrow(ConfigError);
    expect(loadConfig({}).otel).toBeNull();
    expect(
      loadConfig({ OTEL_ENABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).otel,
    ).toEqual({ endpoint: 'http://collector:4318' });
  });

  it('runs out of the box on the embedded engine in dev auth mode', () => {
    const c = loadConfig({});
    expect(c.engines).toEqual({ bus: 'memory', sessions: 'memory', outbox: 'memory' });
    expect(c.auth.mode).toBe('dev');
    expect(c.port).toBe(3000);
    expect(c.gateway).toMatchObject({
      maxFrameBytes: 65536,
      handshakeTimeoutMs: 10000,
      dedupeWindowMs: 600000,
    });
    expect(c.outbox.retentionSec).toBe(86400);
  });

  it('ENGINE=production selects kafka, redis and mysql, each overridable', () => {
    expect(loadConfig({ ENGINE: 'production' }).engines).toEqual({
      bus: 'kafka',
      sessions: 'redis',
      outbox: 'mysql',
    });
    expect(
      loadConfig({ ENGINE: 'production', OUTBOX: 'mysql', BUS: 'kafka', SESSIONS: 'redis' }).engines.bus,
    ).toBe('kafka');
  });

  it('refuses dev auth in production and asks for a key source', () => {
    expect(() => loadConfig({ ...prod, AUTH_MODE: 'dev' })).toThrow(/AUTH_MODE=dev is refused/);
    expect(() => loadConfig({ NODE_ENV: 'production', ENGINE: 'production', ADMIN_API_KEY: KEY })).toThrow(
      /JWT_SECRET/,
    );
    expect(() => loadConfig({ NODE_ENV: 'production', ENGINE: 'production', JWT_SECRET: SECRET })).toThrow(
      /ADMIN_API_KEY/,
    );
    expect(loadConfig(prod).auth.mode).toBe('jwt');
  });

  it('refuses placeholder and short secrets in production only', () => {
    for (const weak of ['change-me', 'short-secret', 'CHANGE-ME']) {
      expect(() => loadConfig({ ...prod, JWT_SECRET: weak })).toThrow(/JWT_SECRET is a placeholder/);
      expect(() => loadConfig({ ...prod, ADMIN_API_KEY: weak })).toThrow(/ADMIN_API_KEY is a placeholder/);
      expect(loadConfig({ AUTH_MODE: 'jwt', JWT_SECRET: weak, ADMIN_API_KEY: weak }).auth.mode).toBe('jwt');
    }
  });

  it('binds loopback in dev auth mode unless HOST is set', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
    expect(loadConfig({ HOST: '0.0.0.0' }).host).toBe('0.0.0.0');
    expect(loadConfig(prod).host).toBe('0.0.0.0');
  });

  it('refuses split roles on in-memory engines', () => {
    expect(() => loadConfig({ APP_ROLES: 'gateway' })).toThrow(/in-memory engines/);
    expect([...loadConfig({ ...prod, APP_ROLES: 'router' }).roles]).toEqual(['router']);
  });

  it.each([
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ BUS: 'rabbit' }, /BUS/],
    [{ REDIS_URL: 'not a url' }, /REDIS_URL/],
    [{ MYSQL_URL: 'postgres://x' }, /MYSQL_URL/],
    [{ MYSQL_URL: 'notaurl' }, /MYSQL_URL/],
    [{ REDIS_URL: '127.0.0.1:6379' }, /REDIS_URL/],
    [{ DIRECTORY: 'http' }, /CONVERSATION_SERVICE_URL/],
    [{ CONVERSATION_SERVICE_URL: 'ftp://x' }, /CONVERSATION_SERVICE_URL/],
    [{ KAFKA_RETENTION_HOURS: '1' }, /KAFKA_RETENTION_HOURS/],
  ])('rejects %p with one clear line', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it.each([
    [{ PORT: 'abc' }, 'PORT must be an integer from 0 to 65535'],
    [{ PORT: '70000' }, 'PORT must be an integer from 0 to 65535'],
    [{ PORT: '-1' }, 'PORT must be an integer from 0 to 65535'],
    [{ PORT: '80.5' }, 'PORT must be an integer from 0 to 65535'],
    [{ JWT_MAX_LIFETIME_SEC: '10' }, 'JWT_MAX_LIFETIME_SEC must be an integer from 60 to 2592000'],
    [{ HEARTBEAT_MS: 'soon' }, 'HEARTBEAT_MS must be an integer of at least 100'],
    [{ KAFKA_RETENTION_HOURS: '1' }, 'KAFKA_RETENTION_HOURS must be an integer of at least 24'],
    [{ MYSQL_POOL_SIZE: '0' }, 'MYSQL_POOL_SIZE must be an integer from 1 to 1000'],
  ])('names the whole integer range for %p', (env, message) => {
    expect(() => loadConfig(env)).toThrow(`invalid configuration: ${message}`);
  });

  it('never echoes a value in its error (it may be a secret)', () => {
    expect(() => loadConfig({ MYSQL_URL: 'mysql:/user:hunter2@host' })).toThrow(/^(?!.*hunter2).*$/);
  });
});
