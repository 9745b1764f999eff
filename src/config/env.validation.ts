import { plainToInstance, Transform } from 'class-transformer';
import {
  IsDefined,
  IsIn,
  IsInt,
  IsOptional,
  Matches,
  IsString,
  IsUrl,
  Max,
  Min,
  MinLength,
  ValidateBy,
  ValidateIf,
  getMetadataStorage,
  validateSync,
  ValidationError,
} from 'class-validator';

/** One row of the configuration reference (README, `.env.example`), declared next to its validation. */
export interface EnvDoc {
  name: string;
  group: string;
  /** As shown to people: a value in backticks, or a sentence for derived defaults. */
  defaultText: string;
  meaning: string;
  /** Value for `.env.example` (production settings); absent = not in the example. */
  example?: string;
}

/** Declaration order = reference order. */
export const ENV_DOCS: EnvDoc[] = [];

function Doc(group: string, defaultText: string, meaning: string, example?: string): PropertyDecorator {
  return (_target, key) => {
    ENV_DOCS.push({ name: String(key), group, defaultText, meaning, example });
  };
}

/** A rule that involves other variables; runs only when the property is set (see @IsOptional). */
function Check(test: (env: EnvVars) => boolean, message: string): PropertyDecorator {
  return ValidateBy({
    name: 'check',
    validator: { validate: (_value, args) => test(args!.object as EnvVars), defaultMessage: () => message },
  });
}

const production = (e: EnvVars) => e.NODE_ENV === 'production';
/** AUTH_MODE as it will be: jwt by default in production. */
export const authModeOf = (e: EnvVars) => e.AUTH_MODE ?? (production(e) ? 'jwt' : 'dev');
const jwt = (e: EnvVars) => authModeOf(e) === 'jwt';
/** The engines as they will be: each from its own variable, else from ENGINE. */
export function enginesOf(e: EnvVars) {
  const prod = e.ENGINE === 'production';
  return {
    bus: (e.BUS ?? (prod ? 'kafka' : 'memory')) as 'memory' | 'kafka',
    sessions: (e.SESSIONS ?? (prod ? 'redis' : 'memory')) as 'memory' | 'redis',
    outbox: (e.OUTBOX ?? (prod ? 'mysql' : 'memory')) as 'memory' | 'mysql',
  };
}
const usesMemoryEngine = (e: EnvVars) => Object.values(enginesOf(e)).includes('memory');
/** Both roles in one process (the default), whatever the spelling. */
const allRoles = (e: EnvVars) => {
  const names = new Set((e.APP_ROLES ?? '').split(',').map((r) => r.trim().toLowerCase()));
  return names.has('gateway') && names.has('router');
};

/** Values people copy from examples and docs; production refuses them whatever their length. */
const PLACEHOLDERS = new Set(['change-me', 'changeme', 'secret', 'password', 'test', 'example', 'relay']);
export const MIN_SECRET_LENGTH = 32;
const strongSecret = (v: string | undefined) =>
  v === undefined || (!PLACEHOLDERS.has(v.trim().toLowerCase()) && v.length >= MIN_SECRET_LENGTH);
const weakSecretMessage = (name: string) =>
  `${name} is a placeholder or shorter than ${MIN_SECRET_LENGTH} characters; refused in production (generate one: openssl rand -base64 48)`;

const toInt = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : Number(value);
const toBool = ({ value }: { value: unknown }) =>
  value === undefined || value === ''
    ? undefined
    : ['1', 'true', 'yes'].includes(String(value).toLowerCase());

/**
 * Every environment variable the service reads, validated once at startup, cross-field rules included.
 * `@Doc` makes this class the one source of the configuration reference: `npm run config:docs` writes
 * the README table and `.env.example` from it, and a unit test fails when they are out of date.
 */
export class EnvVars {
  @Doc(
    'Process',
    '`development`',
    '`production` refuses dev auth, placeholder secrets, and requires `ADMIN_API_KEY` + a JWT key',
    'production',
  )
  @IsOptional()
  @IsIn(['development', 'production', 'test'])
  NODE_ENV?: string;
  @Doc('Process', '`gateway,router`', 'comma list of `gateway`, `router`', 'gateway,router')
  @IsOptional()
  @IsString()
  @Check(
    (e) => !usesMemoryEngine(e) || allRoles(e),
    'in-memory engines need APP_ROLES=gateway,router in one process; use ENGINE=production for split roles',
  )
  APP_ROLES?: string;
  @Doc(
    'Process',
    '`<hostname>-<pid>-<random>`',
    "this node's name in the session map and its channel; must be unique per live process",
  )
  @IsOptional()
  @IsString()
  NODE_ID?: string;
  @Doc(
    'Process',
    '`127.0.0.1` in dev auth, else `0.0.0.0`',
    'HTTP + WebSocket listen address (dev auth lets anyone be anyone, so it stays on loopback unless set)',
  )
  @IsOptional()
  @IsString()
  HOST?: string;
  @Doc('Process', '`3000`', 'HTTP + WebSocket port', '3000')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  PORT?: number;
  @Doc(
    'Process',
    'unset (on `PORT`)',
    'serve `/metrics` on this port (same address as HOST) instead of the public one, which then answers 404; `0` picks a free port',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  METRICS_PORT?: number;
  @Doc('Process', '`log`', '`error`, `warn`, `log`, `debug`, `verbose`')
  @IsOptional()
  @IsIn(['error', 'warn', 'log', 'debug', 'verbose'])
  LOG_LEVEL?: string;
  @Doc('Process', '`json` in production, else `text`', '`json` (one JSON object per line) or `text`')
  @IsOptional()
  @IsIn(['json', 'text'])
  LOG_FORMAT?: string;
  @Doc('Tracing', '`false`', 'OpenTelemetry traces, one per message (gateway -> router -> gateway)')
  @IsOptional()
  @Transform(toBool)
  OTEL_ENABLED?: boolean;
  @Doc('Tracing', '`http://127.0.0.1:4318`', 'OTLP/HTTP collector base URL (`/v1/traces` is appended)')
  @IsOptional()
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] })
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;

  @Doc(
    'Engines',
    '`memory`',
    '`memory` or `production` (= kafka + redis + mysql); each can be overridden below',
    'production',
  )
  @IsOptional()
  @IsIn(['memory', 'production'])
  ENGINE?: string;
  @Doc('Engines', 'from `ENGINE`', '`memory` or `kafka`')
  @IsOptional()
  @IsIn(['memory', 'kafka'])
  BUS?: string;
  @Doc(
    'Engines',
    'from `ENGINE`',
    '`memory` or `redis` (session map, node registry, node channels, send dedupe, membership sets of the built-in directory)',
  )
  @IsOptional()
  @IsIn(['memory', 'redis'])
  SESSIONS?: string;
  @Doc('Engines', 'from `ENGINE`', '`memory` or `mysql` (outbox and built-in directory tables)')
  @IsOptional()
  @IsIn(['memory', 'mysql'])
  OUTBOX?: string;
  @Doc(
    'Directory',
    '`builtin`',
    '`builtin` (stored by relay; a change applies to the next message) or `http` (upstream service)',
  )
  @IsOptional()
  @IsIn(['builtin', 'http'])
  DIRECTORY?: string;

  @Doc('Auth', '`dev` (`jwt` in production)', '`dev` accepts `?user_id=`; `jwt` requires `?token=`', 'jwt')
  @IsOptional()
  @IsIn(['dev', 'jwt'])
  @Check(
    (e) => !(production(e) && e.AUTH_MODE === 'dev'),
    'AUTH_MODE=dev is refused when NODE_ENV=production',
  )
  AUTH_MODE?: string;
  @Doc(
    'Auth',
    '–',
    'HS256 secret; at least 32 characters and no placeholder in production (`openssl rand -base64 48`)',
    'change-me',
  )
  @ValidateIf((e: EnvVars) => e.JWT_SECRET !== undefined || (jwt(e) && !e.JWT_PUBLIC_KEY && !e.JWT_JWKS_URL))
  @IsDefined({ message: 'AUTH_MODE=jwt needs one of JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL' })
  @IsString()
  @Check((e) => !production(e) || strongSecret(e.JWT_SECRET), weakSecretMessage('JWT_SECRET'))
  JWT_SECRET?: string;
  @Doc('Auth', '–', 'PEM (SPKI) public key (RSA, EC or Ed25519) or a JWK set as JSON')
  @IsOptional()
  @IsString()
  JWT_PUBLIC_KEY?: string;
  @Doc('Auth', '–', 'JWKS endpoint, fetched and cached by `jose`')
  @IsOptional()
  @IsUrl({ require_tld: false })
  JWT_JWKS_URL?: string;
  @Doc('Auth', '–', '`iss` checked when set')
  @IsOptional()
  @IsString()
  JWT_ISSUER?: string;
  @Doc('Auth', '–', '`aud` checked when set')
  @IsOptional()
  @IsString()
  JWT_AUDIENCE?: string;
  @Doc(
    'Auth',
    '–',
    'bearer key for `/v1/conversations` (required with `AUTH_MODE=jwt`; same rules as `JWT_SECRET` in production)',
    'change-me',
  )
  @ValidateIf((e: EnvVars) => e.ADMIN_API_KEY !== undefined || jwt(e))
  @IsDefined({ message: 'AUTH_MODE=jwt needs ADMIN_API_KEY for the directory API' })
  @IsString()
  @Check((e) => !production(e) || strongSecret(e.ADMIN_API_KEY), weakSecretMessage('ADMIN_API_KEY'))
  ADMIN_API_KEY?: string;
  @Doc('Auth', "the configured key's algorithm", 'comma list of accepted `alg`s (e.g. `RS256,ES256`)')
  @IsOptional()
  @IsString()
  JWT_ALGORITHMS?: string;
  @Doc('Auth', '`86400`', 'longest accepted token lifetime (`exp − iat`)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(60)
  @Max(30 * 86400)
  JWT_MAX_LIFETIME_SEC?: number;
  @Doc('Auth', '`5`', 'clock tolerance for `exp`, `nbf`, `iat`')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(300)
  JWT_CLOCK_TOLERANCE_SEC?: number;
  @Doc(
    'Auth',
    '`true` (`false` in production)',
    'serve the debug console at `/console` (gateway role; its API takes `ADMIN_API_KEY`)',
  )
  @IsOptional()
  @Transform(toBool)
  DEBUG_CONSOLE?: boolean;

  @Doc('Gateway', '`25000`', 'server ping interval; two missed pongs terminate the connection', '25000')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  HEARTBEAT_MS?: number;
  @Doc(
    'Gateway',
    '`10000`',
    'time allowed for `hello` (close 4008); shrinks under pressure, see `PREHELLO_SOFT_LIMIT`',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  HANDSHAKE_TIMEOUT_MS?: number;
  @Doc('Gateway', '`65536`', 'frame size limit (`too_large`, close 1009)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(256)
  MAX_FRAME_BYTES?: number;
  @Doc('Gateway', '`600000`', 'how long a client ref maps to its first ack')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1000)
  DEDUPE_WINDOW_MS?: number;
  @Doc('Gateway', '`50`', 'per-connection refill of the `send` bucket')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  SEND_RATE_PER_SEC?: number;
  @Doc('Gateway', '`200`', 'per-connection size of the `send` bucket (`rate_limited` beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  SEND_BURST?: number;
  @Doc('Gateway', '`64`', 'nesting levels of a frame (4..128); a `body` may nest two fewer')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(4)
  @Max(128)
  MAX_JSON_DEPTH?: number;
  @Doc('Gateway', '`100`', 'per-connection refill of the bucket every frame type takes from')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  FRAME_RATE_PER_SEC?: number;
  @Doc('Gateway', '`300`', 'per-connection size of that bucket (`rate_limited` beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  FRAME_BURST?: number;
  @Doc('Gateway', '`100`', 'close 4029 once over-budget frames outnumber those within budget by this many')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  FLOOD_CLOSE_AFTER?: number;
  @Doc('Gateway', '`16777216`', 'unsent bytes per connection, every frame counted, before close 1013')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(65536)
  MAX_BUFFERED_BYTES?: number;

  @Doc('Admission', '`15000`', "connections per node (503 beyond); keep under the process's open-file limit")
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  MAX_CONNECTIONS?: number;
  @Doc('Admission', '`20`', 'live connections per user on one node (429 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  MAX_CONNECTIONS_PER_USER?: number;
  @Doc('Admission', '`1000`', 'live connections per client address on one node (429 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  MAX_CONNECTIONS_PER_IP?: number;
  @Doc('Admission', '`20`', 'upgrade attempts per second per client address (429 beyond the burst)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  CONNECT_RATE_PER_IP?: number;
  @Doc('Admission', '`100`', 'upgrade attempts a client address may make at once')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  CONNECT_BURST_PER_IP?: number;
  @Doc(
    'Admission',
    '`256`',
    'connections waiting for `hello` beyond which the hello timeout shrinks (floor 1 s)',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  PREHELLO_SOFT_LIMIT?: number;
  @Doc('Admission', '`4096`', 'connections waiting for `hello` beyond which upgrades get 503')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  MAX_PENDING_HANDSHAKES?: number;
  @Doc(
    'Admission',
    '– (any)',
    'comma list of browser origins allowed to open `/ws` (`https://app.example.com`); others get 403',
    'https://app.example.com',
  )
  @IsOptional()
  @IsString()
  ALLOWED_ORIGINS?: string;
  @Doc(
    'Admission',
    '`0`',
    'proxies in front of the node that append `X-Forwarded-For`; 0 = use the socket address',
    '1',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(16)
  TRUST_PROXY_HOPS?: number;
  // ---- Long polling (issue 12) ----
  @Doc(
    'Long polling',
    '`25000`',
    'how long `GET /v1/poll/:sid` is held when there is nothing to send; a session ends after 2 of these without a poll',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  @Max(120_000)
  POLL_TIMEOUT_MS?: number;
  @Doc('Long polling', '`5`', 'live long-polling sessions per user, across the cluster (429 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  POLL_MAX_SESSIONS_PER_USER?: number;
  @Doc('Long polling', '`256`', 'most frames in one poll response (the rest waits for the next poll)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  POLL_MAX_RESPONSE_FRAMES?: number;
  @Doc(
    'Long polling',
    '`1048576`',
    'bytes of frames in one poll response (one larger frame still goes alone)',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  POLL_MAX_RESPONSE_BYTES?: number;
  @Doc('Long polling', '`100`', 'client frames in one `POST /v1/poll/:sid` (413 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  POLL_MAX_REQUEST_FRAMES?: number;
  @Doc('Long polling', '`1048576`', 'body bytes of one `POST /v1/poll/...` (413 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  POLL_MAX_BODY_BYTES?: number;
  @Doc(
    'Long polling',
    '– (from `JWT_SECRET`, else random per process)',
    'key that signs session ids so every gateway accepts them; set the same value on every node',
  )
  @IsOptional()
  @IsString()
  @MinLength(32)
  POLL_SESSION_SECRET?: string;

  @Doc('Session', '`3 × HEARTBEAT_MS`', 'session entry and node registry TTL')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1000)
  SESSION_TTL_MS?: number;

  // ---- v1.1 ephemeral live features: typing and presence ----
  @Doc('Live', '`6000`', 'how long a typing `start` lasts on the receiver (`expires_in_ms`)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(500)
  TYPING_EXPIRES_MS?: number;
  @Doc('Live', '`2000`', 'at most one relayed typing `start` per user per conversation per this many ms')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  TYPING_INTERVAL_MS?: number;
  @Doc('Live', '`5000`', 'a user is announced offline this long after their last connection closed')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  PRESENCE_GRACE_MS?: number;
  @Doc('Live', '`1000`', 'largest conversation a presence subscription accepts (`too_large` beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(10000)
  PRESENCE_MAX_MEMBERS?: number;
  @Doc('Live', '`100`', 'presence subscriptions per connection (`rate_limited` beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  PRESENCE_MAX_SUBSCRIPTIONS?: number;
  @Doc('Process', '`10000`', 'bound on the SIGTERM drain; the process exits by then')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  SHUTDOWN_TIMEOUT_MS?: number;

  @Doc('Outbox', '`86400`', 'how long undelivered/replayable deliveries are kept', '86400')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  OUTBOX_RETENTION_SEC?: number;
  @Doc('Outbox', '`60000`', 'purge cadence')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  OUTBOX_PURGE_INTERVAL_MS?: number;
  @Doc('Outbox', '`5000`', 'rows per purge DELETE')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  OUTBOX_PURGE_CHUNK?: number;
  @Doc(
    'Outbox',
    '`10000`',
    'embedded outbox: deliveries kept per user; beyond it the oldest go (a device resuming from before them gets `recovered:false`)',
    '10000',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  OUTBOX_MEMORY_MAX_PER_USER?: number;
  @Doc(
    'Outbox',
    '`4194304`',
    'embedded outbox: bytes of envelope JSON kept per user, same rule as OUTBOX_MEMORY_MAX_PER_USER',
    '4194304',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  OUTBOX_MEMORY_MAX_BYTES?: number;

  @Doc(
    'Outbox',
    'unset (the outbox lives in `MYSQL_URL`)',
    'sharded outbox: comma list of MySQL URLs, one per shard, in a fixed order; a user is placed by a stable hash of the user id (docs/scaling.md). The directory stays in `MYSQL_URL`. Add a shard only with `npm run outbox:reshard`',
    'mysql://root@10.0.0.1:3306/relay,mysql://root@10.0.0.2:3306/relay',
  )
  @IsOptional()
  @IsString()
  @Check(
    (e) =>
      (e.OUTBOX_SHARDS ?? '')
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean)
        .every((u) => /^mysql:\/\/[^\s,]+$/.test(u)),
    'OUTBOX_SHARDS must be a comma list of mysql:// URLs',
  )
  @Check((e) => {
    const urls = (e.OUTBOX_SHARDS ?? '')
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean);
    return new Set(urls).size === urls.length;
  }, 'OUTBOX_SHARDS lists a shard twice')
  OUTBOX_SHARDS?: string;

  @Doc(
    'Directory',
    '–',
    'upstream: `GET {url}/conversations/{id}/members` → `{"members":[...]}`, 404 = no such conversation (required with `DIRECTORY=http`)',
  )
  @ValidateIf((e: EnvVars) => e.CONVERSATION_SERVICE_URL !== undefined || e.DIRECTORY === 'http')
  @IsDefined({ message: 'DIRECTORY=http needs CONVERSATION_SERVICE_URL' })
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] })
  CONVERSATION_SERVICE_URL?: string;
  @Doc('Directory', '`5000`', 'upstream cache TTL')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  DIRECTORY_CACHE_TTL_MS?: number;
  @Doc('Directory', '`2000`', 'upstream request timeout')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  DIRECTORY_TIMEOUT_MS?: number;
  @Doc('Directory', '`10000`', 'members per conversation in the built-in directory API (400 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(100_000)
  MAX_CONVERSATION_MEMBERS?: number;

  // ---- v1.1 receipts (delivered/read markers) ----
  @Doc(
    'Receipts',
    '`100`',
    'conversations with more members get receipts only on the devices of the senders whose messages they cover',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  RECEIPTS_FANOUT_MAX_MEMBERS?: number;
  @Doc(
    'Receipts',
    '`5`',
    '`read` frames per second per connection (burst 4x); more are answered `rate_limited`',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  RECEIPTS_RATE_PER_SEC?: number;
  @Doc(
    'Receipts',
    '`true`',
    'derive `delivered` receipts from `confirm` frames (`false`: read receipts only)',
  )
  @IsOptional()
  @Transform(toBool)
  RECEIPTS_DELIVERED?: boolean;

  @Doc('Router', '`3`', 'attempts of one message, dependencies answering, before the router dead-letters it')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(20)
  POISON_MAX_ATTEMPTS?: number;
  @Doc(
    'Router',
    '`64`',
    'recipients per live gateway node from which a batch goes to every live node without a session lookup (each node keeps the users it holds); `0` never',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  ROUTER_BROADCAST_PER_NODE?: number;
  @Doc('Health', '`30000`', 'how long a shared dependency may fail before `/health/ready` turns 503')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  READY_DEPENDENCY_GRACE_MS?: number;

  @Doc('Kafka', '`127.0.0.1:19092`', 'comma list', '127.0.0.1:19092')
  @IsOptional()
  @IsString()
  KAFKA_BROKERS?: string;
  @Doc('Kafka', '`relay`', 'client id')
  @IsOptional()
  @IsString()
  KAFKA_CLIENT_ID?: string;
  @Doc('Kafka', '`relay.ingress`', 'ingress topic, created at startup if missing')
  @IsOptional()
  @IsString()
  KAFKA_TOPIC?: string;
  @Doc('Kafka', '`relay-router`', "routers' consumer group")
  @IsOptional()
  @IsString()
  KAFKA_GROUP_ID?: string;
  @Doc(
    'Kafka',
    '`<KAFKA_TOPIC>.dlq`',
    'dead-letter topic for records the router quarantines; created at startup if missing',
  )
  @IsOptional()
  @IsString()
  KAFKA_DLQ_TOPIC?: string;
  @Doc('Kafka', '`12`', "partitions of the ingress topic (also the memory bus's partition count)", '12')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  KAFKA_PARTITIONS?: number;
  @Doc(
    'Kafka',
    '`8`',
    'partitions a router routes at once (each holds a MySQL connection while its batch commits: keep <= MYSQL_POOL_SIZE)',
    '8',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(256)
  KAFKA_CONCURRENT_PARTITIONS?: number;
  @Doc('Kafka', '`1`', 'use 3 in production')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  KAFKA_REPLICATION_FACTOR?: number;
  @Doc('Kafka', '`24`', 'at least 24')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(24)
  KAFKA_RETENTION_HOURS?: number;

  @Doc('Redis', '`redis://127.0.0.1:6379`', '', 'redis://127.0.0.1:6379')
  @IsOptional()
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['redis', 'rediss'] })
  REDIS_URL?: string;
  @Doc('Redis', '`relay:`', 'all keys and channels are under it')
  @IsOptional()
  @IsString()
  REDIS_KEY_PREFIX?: string;
  @Doc(
    'Redis',
    'unset (single Redis at `REDIS_URL`)',
    'Redis Cluster seed nodes, comma list of `host:port`; when set, REDIS_URL is not used, node channels use sharded pub/sub (Redis >= 7)',
    '10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379',
  )
  @IsOptional()
  @Matches(/^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/, {
    message: 'REDIS_CLUSTER_NODES must be a comma list of host:port',
  })
  REDIS_CLUSTER_NODES?: string;

  @Doc('MySQL', '`mysql://root@127.0.0.1:3306/relay`', '', 'mysql://root@127.0.0.1:3306/relay')
  @IsOptional()
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['mysql'] })
  MYSQL_URL?: string;
  @Doc('MySQL', '`true`', 'run migrations at startup under a named lock (`npm run migrate` does it by hand)')
  @IsOptional()
  @Transform(toBool)
  MYSQL_MIGRATE_ON_START?: boolean;
  @Doc(
    'MySQL',
    '`10`',
    "MySQL connections per process (a router runs up to KAFKA_CONCURRENT_PARTITIONS partitions' transactions at once)",
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(1000)
  MYSQL_POOL_SIZE?: number;

  // ---- Backends: publish API, webhooks, API docs (src/publish, src/webhooks, src/openapi) ----
  @Doc(
    'Backends',
    '–',
    'comma list of service ids that may publish (`POST /v1/conversations/:id/messages`) to any existing conversation without being a member',
  )
  @IsOptional()
  @IsString()
  PUBLISH_SERVICE_IDS?: string;
  @Doc('Backends', '`500`', 'messages per `POST /v1/messages` (400 beyond)')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(10_000)
  PUBLISH_MAX_BATCH?: number;
  @Doc('Backends', '`true`', '`false` turns off `/openapi.json` and the API docs UI at `/docs` (404)')
  @IsOptional()
  @Transform(toBool)
  API_DOCS?: boolean;
  @Doc(
    'Backends',
    '–',
    'comma list of webhook endpoint URLs; each gets every event of the stream, signed (README "Connect your backend"). Needs `WEBHOOK_SECRET`',
  )
  @IsOptional()
  @IsString()
  @Check(
    (e) =>
      (e.WEBHOOK_URLS ?? '')
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean)
        .every((u) => /^https?:\/\/[^\s]+$/.test(u)),
    'WEBHOOK_URLS must be a comma list of http(s) URLs',
  )
  @Check((e) => e.WEBHOOK_SECRET !== undefined, 'WEBHOOK_URLS needs WEBHOOK_SECRET (signs every delivery)')
  WEBHOOK_URLS?: string;
  @Doc(
    'Backends',
    '–',
    'HMAC-SHA256 key of webhook signatures; a comma list signs with each (rotation: add the new one, then drop the old)',
  )
  @IsOptional()
  @IsString()
  @Check(
    (e) => !production(e) || (e.WEBHOOK_SECRET ?? '').split(',').every((s) => strongSecret(s)),
    weakSecretMessage('WEBHOOK_SECRET'),
  )
  WEBHOOK_SECRET?: string;
  @Doc('Backends', '`100`', 'events per webhook POST')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(1000)
  WEBHOOK_BATCH_MAX?: number;
  @Doc('Backends', '`10000`', 'how long relay waits for a webhook endpoint to answer one POST')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(100)
  WEBHOOK_TIMEOUT_MS?: number;
  @Doc(
    'Backends',
    '`86400000`',
    'how long a failing batch is retried (back-off doubling from 250 ms) before it is dropped and counted',
  )
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  WEBHOOK_RETRY_FOR_MS?: number;
  @Doc('Backends', '`30000`', 'longest pause between two attempts of a webhook batch')
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(10)
  WEBHOOK_BACKOFF_MAX_MS?: number;
}

export class ConfigError extends Error {}

/**
 * One message for a failed @IsInt/@Min/@Max, naming the whole range: `PORT=abc` reads "PORT must be an
 * integer from 0 to 65535" rather than whichever single constraint class-validator reported first.
 */
function intRangeMessage(error: ValidationError): string | undefined {
  const failed = Object.keys(error.constraints ?? {});
  if (!failed.some((c) => ['isInt', 'min', 'max'].includes(c))) return undefined;
  const rules = getMetadataStorage()
    .getTargetValidationMetadatas(EnvVars, '', true, false)
    .filter((m) => m.propertyName === error.property);
  const bound = (name: string) => rules.find((m) => m.name === name)?.constraints?.[0] as number | undefined;
  const [min, max] = [bound('min'), bound('max')];
  const range =
    min !== undefined && max !== undefined
      ? ` from ${min} to ${max}`
      : min !== undefined
        ? ` of at least ${min}`
        : max !== undefined
          ? ` of at most ${max}`
          : '';
  return `${error.property} must be an integer${range}`;
}

export function validateEnv(env: Record<string, string | undefined>): EnvVars {
  const vars = plainToInstance(EnvVars, env, { excludeExtraneousValues: false });
  const errors = validateSync(vars, { skipMissingProperties: false, forbidUnknownValues: false });
  if (errors.length > 0) {
    const first = errors[0];
    const why = intRangeMessage(first) ?? Object.values(first.constraints ?? {})[0] ?? 'is invalid';
    // The value is not echoed: it may be a secret.
    throw new ConfigError(`invalid configuration: ${why}`);
  }
  return vars;
}
