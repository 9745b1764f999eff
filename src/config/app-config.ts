import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { authModeOf, ConfigError, enginesOf, validateEnv } from './env.validation';

export const ROLES = ['gateway', 'router'] as const;
export type Role = (typeof ROLES)[number];

export type BusEngine = 'memory' | 'kafka';
export type SessionEngine = 'memory' | 'redis';
export type OutboxEngine = 'memory' | 'mysql';

/** Typed, validated configuration: the only place that reads process.env. */
export interface AppConfig {
  env: 'development' | 'production' | 'test';
  roles: ReadonlySet<Role>;
  nodeId: string;
  host: string;
  port: number;
  /** A separate port for `/metrics` (null: served on `port`). */
  metricsPort: number | null;
  logLevel: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
  logFormat: 'json' | 'text';
  /** OpenTelemetry tracing; null = off (no tracer, no spans). */
  otel: { endpoint: string } | null;
  engines: { bus: BusEngine; sessions: SessionEngine; outbox: OutboxEngine };
  auth: {
    mode: 'dev' | 'jwt';
    jwtSecret?: string;
    jwtPublicKey?: string;
    jwksUrl?: string;
    issuer?: string;
    audience?: string;
    adminApiKey?: string;
    /** JWT `alg` allow-list; undefined = only the algorithm of the configured key (AuthService). */
    algorithms?: string[];
    /** Longest accepted token lifetime (`exp` - `iat`, or `exp` - now without `iat`). */
    maxLifetimeSec: number;
    clockToleranceSec: number;
  };
  gateway: {
    heartbeatMs: number;
    handshakeTimeoutMs: number;
    maxFrameBytes: number;
    /** Deepest nesting of objects/arrays in a frame; the frame object itself is level 1. */
    maxJsonDepth: number;
    dedupeWindowMs: number;
    sendRatePerSec: number;
    sendBurst: number;
    /** Token bucket for every frame type (send frames also take a send token). */
    frameRatePerSec: number;
    frameBurst: number;
    /** Close 4029 once frames over budget (each answered `rate_limited`) outnumber those within it by this. */
    floodCloseAfter: number;
    /** Unsent bytes a connection may queue (every write counts) before close 1013. */
    maxBufferedBytes: number;
  };
  admission: {
    maxConnections: number;
    maxConnectionsPerUser: number;
    maxConnectionsPerIp: number;
    connectRatePerIp: number;
    connectBurstPerIp: number;
    /** Above this many connections waiting for hello, the hello timeout shrinks (floor 1 s). */
    preHelloSoftLimit: number;
    /** Connections waiting for hello beyond which upgrades get 503. */
    maxPendingHandshakes: number;
    /** null = any Origin (requests without Origin are never refused for it). */
    allowedOrigins: string[] | null;
    /** Proxies in front of us whose X-Forwarded-For entries are trusted (0 = use the socket address). */
    trustProxyHops: number;
  };
  /** Long-polling transport (src/gateway/poll). */
  poll: {
    timeoutMs: number;
    maxSessionsPerUser: number;
    maxResponseFrames: number;
    maxResponseBytes: number;
    maxRequestFrames: number;
    maxBodyBytes: number;
    /** null: derived from JWT_SECRET, else random per process (one node only). */
    sessionSecret: string | null;
  };
  router: {
    poisonMaxAttempts: number;
    /** Recipients per live node from which a batch is broadcast instead of looked up; 0: never. */
    broadcastPerNode: number;
  };
  /** v1.1 receipts (docs/protocol.md "Receipts"). */
  receipts: { fanoutMaxMembers: number; readRatePerSec: number; delivered: boolean };
  health: { dependencyGraceMs: number };
  /** The debug console at /console (src/console): on outside production unless DEBUG_CONSOLE=false. */
  console: { enabled: boolean };
  sessionTtlMs: number;
  /** v1.1 typing and presence (src/presence, src/gateway/typing.service.ts, presence-hub.service.ts). */
  live: {
    typingExpiresMs: number;
    typingIntervalMs: number;
    presenceGraceMs: number;
    presenceMaxMembers: number;
    presenceMaxSubscriptions: number;
  };
  shutdownTimeoutMs: number;
  outbox: {
    retentionSec: number;
    purgeIntervalMs: number;
    purgeChunk: number;
    /** Embedded outbox bounds per user (count, bytes of envelope JSON). */
    memoryMaxPerUser: number;
    memoryMaxBytesPerUser: number;
    /** Sharded outbox: one MySQL URL per shard, in placement order; empty = the outbox is in `mysql.url`. */
    shards: string[];
  };
  directory: {
    kind: 'builtin' | 'http';
    serviceUrl?: string;
    cacheTtlMs: number;
    timeoutMs: number;
    maxMembers: number;
  };
  kafka: {
    brokers: string[];
    clientId: string;
    topic: string;
    groupId: string;
    /** Records the router quarantines (see docs/architecture.md, poison messages). */
    dlqTopic: string;
    partitions: number;
    /** Partitions a router routes at once (kafkajs partitionsConsumedConcurrently). */
    partitionsConcurrently?: number;
    replicationFactor: number;
    retentionHours: number;
  };
  /** clusterNodes: Redis Cluster seeds (`host:port`); null = the single Redis at url. */
  redis: { url: string; keyPrefix: string; clusterNodes: string[] | null };
  mysql: { url: string; migrateOnStart: boolean; poolSize: number };
  /** The HTTP publish API (src/publish). */
  publish: { serviceIds: ReadonlySet<string>; maxBatch: number };
  /** `/openapi.json` and `/docs`. */
  apiDocs: boolean;
  /** Webhook endpoints (src/webhooks); empty = off. */
  webhooks: {
    urls: string[];
    secrets: string[];
    batchMax: number;
    timeoutMs: number;
    retryForMs: number;
    backoffMaxMs: number;
  };
}

export function parseRoles(raw: string | undefined): ReadonlySet<Role> {
  const names = (raw ?? 'gateway,router')
    .split(',')
    .map((r) => r.trim().toLowerCase())
    .filter(Boolean);
  if (names.length === 0) throw new ConfigError('invalid configuration: APP_ROLES is empty');
  for (const name of names) {
    if (!(ROLES as readonly string[]).includes(name)) {
      throw new ConfigError(
        `invalid configuration: unknown role "${name}" in APP_ROLES (known: ${ROLES.join(', ')})`,
      );
    }
  }
  return new Set(names as Role[]);
}

export function loadConfig(rawEnv: Record<string, string | undefined> = process.env): AppConfig {
  const e = validateEnv(rawEnv);
  const env = (e.NODE_ENV ?? 'development') as AppConfig['env'];
  const roles = parseRoles(e.APP_ROLES);

  // Cross-field rules (memory engines need both roles, jwt needs keys, production refuses dev auth and
  // weak secrets, DIRECTORY=http needs its URL) are part of the env schema in env.validation.ts.
  const engines = enginesOf(e);
  const authMode = authModeOf(e) as 'dev' | 'jwt';
  const directoryKind = (e.DIRECTORY ?? 'builtin') as 'builtin' | 'http';

  const heartbeatMs = e.HEARTBEAT_MS ?? 25_000;
  const sendRatePerSec = e.SEND_RATE_PER_SEC ?? 50;
  const sendBurst = e.SEND_BURST ?? 200;
  return {
    env,
    roles,
    nodeId: e.NODE_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    // Dev auth lets anyone be anyone: without an explicit HOST it only listens on loopback.
    host: e.HOST ?? (authMode === 'dev' ? '127.0.0.1' : '0.0.0.0'),
    port: e.PORT ?? 3000,
    metricsPort: e.METRICS_PORT ?? null,
    logLevel: (e.LOG_LEVEL ?? 'log') as AppConfig['logLevel'],
    logFormat: (e.LOG_FORMAT ?? (env === 'production' ? 'json' : 'text')) as AppConfig['logFormat'],
    otel: e.OTEL_ENABLED
      ? { endpoint: (e.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://127.0.0.1:4318').replace(/\/+$/, '') }
      : null,
    engines,
    auth: {
      mode: authMode,
      jwtSecret: e.JWT_SECRET,
      jwtPublicKey: e.JWT_PUBLIC_KEY,
      jwksUrl: e.JWT_JWKS_URL,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      adminApiKey: e.ADMIN_API_KEY,
      algorithms: list(e.JWT_ALGORITHMS),
      maxLifetimeSec: e.JWT_MAX_LIFETIME_SEC ?? 24 * 3600,
      clockToleranceSec: e.JWT_CLOCK_TOLERANCE_SEC ?? 5,
    },
    gateway: {
      heartbeatMs,
      handshakeTimeoutMs: e.HANDSHAKE_TIMEOUT_MS ?? 10_000,
      maxFrameBytes: e.MAX_FRAME_BYTES ?? 64 * 1024,
      maxJsonDepth: e.MAX_JSON_DEPTH ?? 64,
      dedupeWindowMs: e.DEDUPE_WINDOW_MS ?? 10 * 60_000,
      sendRatePerSec,
      sendBurst,
      frameRatePerSec: e.FRAME_RATE_PER_SEC ?? Math.max(100, sendRatePerSec * 2),
      frameBurst: e.FRAME_BURST ?? Math.max(300, sendBurst + 100),
      floodCloseAfter: e.FLOOD_CLOSE_AFTER ?? 100,
      maxBufferedBytes: e.MAX_BUFFERED_BYTES ?? 16 << 20,
    },
    admission: {
      maxConnections: e.MAX_CONNECTIONS ?? 15_000,
      maxConnectionsPerUser: e.MAX_CONNECTIONS_PER_USER ?? 20,
      maxConnectionsPerIp: e.MAX_CONNECTIONS_PER_IP ?? 1_000,
      connectRatePerIp: e.CONNECT_RATE_PER_IP ?? 20,
      connectBurstPerIp: e.CONNECT_BURST_PER_IP ?? 100,
      preHelloSoftLimit: e.PREHELLO_SOFT_LIMIT ?? 256,
      maxPendingHandshakes: e.MAX_PENDING_HANDSHAKES ?? 4_096,
      allowedOrigins: list(e.ALLOWED_ORIGINS) ?? null,
      trustProxyHops: e.TRUST_PROXY_HOPS ?? 0,
    },
    poll: {
      timeoutMs: e.POLL_TIMEOUT_MS ?? 25_000,
      maxSessionsPerUser: e.POLL_MAX_SESSIONS_PER_USER ?? 5,
      maxResponseFrames: e.POLL_MAX_RESPONSE_FRAMES ?? 256,
      maxResponseBytes: e.POLL_MAX_RESPONSE_BYTES ?? 1 << 20,
      maxRequestFrames: e.POLL_MAX_REQUEST_FRAMES ?? 100,
      maxBodyBytes: e.POLL_MAX_BODY_BYTES ?? 1 << 20,
      sessionSecret: e.POLL_SESSION_SECRET ?? null,
    },
    router: {
      poisonMaxAttempts: e.POISON_MAX_ATTEMPTS ?? 3,
      broadcastPerNode: e.ROUTER_BROADCAST_PER_NODE ?? 64,
    },
    receipts: {
      fanoutMaxMembers: e.RECEIPTS_FANOUT_MAX_MEMBERS ?? 100,
      readRatePerSec: e.RECEIPTS_RATE_PER_SEC ?? 5,
      delivered: e.RECEIPTS_DELIVERED ?? true,
    },
    health: { dependencyGraceMs: e.READY_DEPENDENCY_GRACE_MS ?? 30_000 },
    console: { enabled: e.DEBUG_CONSOLE ?? env !== 'production' },
    // Three missed heartbeats before a crashed node's sessions vanish on their own.
    sessionTtlMs: e.SESSION_TTL_MS ?? heartbeatMs * 3,
    live: {
      typingExpiresMs: e.TYPING_EXPIRES_MS ?? 6_000,
      typingIntervalMs: e.TYPING_INTERVAL_MS ?? 2_000,
      presenceGraceMs: e.PRESENCE_GRACE_MS ?? 5_000,
      presenceMaxMembers: e.PRESENCE_MAX_MEMBERS ?? 1_000,
      presenceMaxSubscriptions: e.PRESENCE_MAX_SUBSCRIPTIONS ?? 100,
    },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS ?? 10_000,
    outbox: {
      retentionSec: e.OUTBOX_RETENTION_SEC ?? 24 * 3600,
      purgeIntervalMs: e.OUTBOX_PURGE_INTERVAL_MS ?? 60_000,
      purgeChunk: e.OUTBOX_PURGE_CHUNK ?? 5_000,
      memoryMaxPerUser: e.OUTBOX_MEMORY_MAX_PER_USER ?? 10_000,
      memoryMaxBytesPerUser: e.OUTBOX_MEMORY_MAX_BYTES ?? 4 * 1024 * 1024,
      shards: list(e.OUTBOX_SHARDS) ?? [],
    },
    directory: {
      kind: directoryKind,
      serviceUrl: e.CONVERSATION_SERVICE_URL?.replace(/\/+$/, ''),
      cacheTtlMs: e.DIRECTORY_CACHE_TTL_MS ?? 5_000,
      timeoutMs: e.DIRECTORY_TIMEOUT_MS ?? 2_000,
      maxMembers: e.MAX_CONVERSATION_MEMBERS ?? 10_000,
    },
    kafka: {
      brokers: (e.KAFKA_BROKERS ?? '127.0.0.1:19092').split(',').map((b) => b.trim()),
      clientId: e.KAFKA_CLIENT_ID ?? 'relay',
      topic: e.KAFKA_TOPIC ?? 'relay.ingress',
      groupId: e.KAFKA_GROUP_ID ?? 'relay-router',
      dlqTopic: e.KAFKA_DLQ_TOPIC ?? `${e.KAFKA_TOPIC ?? 'relay.ingress'}.dlq`,
      partitions: e.KAFKA_PARTITIONS ?? 12,
      partitionsConcurrently: e.KAFKA_CONCURRENT_PARTITIONS ?? 8,
      replicationFactor: e.KAFKA_REPLICATION_FACTOR ?? 1,
      retentionHours: e.KAFKA_RETENTION_HOURS ?? 24,
    },
    redis: {
      url: e.REDIS_URL ?? 'redis://127.0.0.1:6379',
      keyPrefix: e.REDIS_KEY_PREFIX ?? 'relay:',
      clusterNodes: e.REDIS_CLUSTER_NODES ? e.REDIS_CLUSTER_NODES.split(',').map((n) => n.trim()) : null,
    },
    mysql: {
      url: e.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/relay',
      migrateOnStart: e.MYSQL_MIGRATE_ON_START ?? true,
      poolSize: e.MYSQL_POOL_SIZE ?? 10,
    },
    publish: {
      serviceIds: new Set(list(e.PUBLISH_SERVICE_IDS) ?? []),
      maxBatch: e.PUBLISH_MAX_BATCH ?? 500,
    },
    apiDocs: e.API_DOCS ?? true,
    webhooks: {
      urls: list(e.WEBHOOK_URLS) ?? [],
      secrets: list(e.WEBHOOK_SECRET) ?? [],
      batchMax: e.WEBHOOK_BATCH_MAX ?? 100,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS ?? 10_000,
      retryForMs: e.WEBHOOK_RETRY_FOR_MS ?? 24 * 3600_000,
      backoffMaxMs: e.WEBHOOK_BACKOFF_MAX_MS ?? 30_000,
    },
  };
}

function list(raw: string | undefined): string[] | undefined {
  const items = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return items.length > 0 ? items : undefined;
}
