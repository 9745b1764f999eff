import { plainToInstance, Transform } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, IsUrl, Max, Min, validateSync } from 'class-validator';

const toInt = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : Number(value);
const toBool = ({ value }: { value: unknown }) =>
  value === undefined || value === ''
    ? undefined
    : ['1', 'true', 'yes'].includes(String(value).toLowerCase());

/** Every environment variable the service reads, validated once at startup (see docs in README). */
export class EnvVars {
  @IsOptional() @IsIn(['development', 'production', 'test']) NODE_ENV?: string;
  @IsOptional() @IsString() APP_ROLES?: string;
  @IsOptional() @IsString() NODE_ID?: string;
  @IsOptional() @IsString() HOST?: string;
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(65535) PORT?: number;
  @IsOptional() @IsIn(['error', 'warn', 'log', 'debug', 'verbose']) LOG_LEVEL?: string;

  @IsOptional() @IsIn(['memory', 'production']) ENGINE?: string;
  @IsOptional() @IsIn(['memory', 'kafka']) BUS?: string;
  @IsOptional() @IsIn(['memory', 'redis']) SESSIONS?: string;
  @IsOptional() @IsIn(['memory', 'mysql']) OUTBOX?: string;
  @IsOptional() @IsIn(['builtin', 'http']) DIRECTORY?: string;

  @IsOptional() @IsIn(['dev', 'jwt']) AUTH_MODE?: string;
  @IsOptional() @IsString() JWT_SECRET?: string;
  @IsOptional() @IsString() JWT_PUBLIC_KEY?: string;
  @IsOptional() @IsUrl({ require_tld: false }) JWT_JWKS_URL?: string;
  @IsOptional() @IsString() JWT_ISSUER?: string;
  @IsOptional() @IsString() JWT_AUDIENCE?: string;
  @IsOptional() @IsString() ADMIN_API_KEY?: string;
  @IsOptional() @IsString() JWT_ALGORITHMS?: string;
  @IsOptional() @Transform(toInt) @IsInt() @Min(60) @Max(30 * 86400) JWT_MAX_LIFETIME_SEC?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(300) JWT_CLOCK_TOLERANCE_SEC?: number;

  @IsOptional() @Transform(toInt) @IsInt() @Min(100) HEARTBEAT_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(100) HANDSHAKE_TIMEOUT_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(256) MAX_FRAME_BYTES?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1000) DEDUPE_WINDOW_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) SEND_RATE_PER_SEC?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) SEND_BURST?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(4) @Max(128) MAX_JSON_DEPTH?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) FRAME_RATE_PER_SEC?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) FRAME_BURST?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) FLOOD_CLOSE_AFTER?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(65536) MAX_BUFFERED_BYTES?: number;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1) MAX_CONNECTIONS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) MAX_CONNECTIONS_PER_USER?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) MAX_CONNECTIONS_PER_IP?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) CONNECT_RATE_PER_IP?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) CONNECT_BURST_PER_IP?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) PREHELLO_SOFT_LIMIT?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) MAX_PENDING_HANDSHAKES?: number;
  @IsOptional() @IsString() ALLOWED_ORIGINS?: string;
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(16) TRUST_PROXY_HOPS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1000) SESSION_TTL_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(100) SHUTDOWN_TIMEOUT_MS?: number;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1) OUTBOX_RETENTION_SEC?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(100) OUTBOX_PURGE_INTERVAL_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) OUTBOX_PURGE_CHUNK?: number;

  @IsOptional()
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] })
  CONVERSATION_SERVICE_URL?: string;
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) DIRECTORY_CACHE_TTL_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(100) DIRECTORY_TIMEOUT_MS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) @Max(100_000) MAX_CONVERSATION_MEMBERS?: number;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1) @Max(20) POISON_MAX_ATTEMPTS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) READY_DEPENDENCY_GRACE_MS?: number;

  @IsOptional() @IsString() KAFKA_BROKERS?: string;
  @IsOptional() @IsString() KAFKA_CLIENT_ID?: string;
  @IsOptional() @IsString() KAFKA_TOPIC?: string;
  @IsOptional() @IsString() KAFKA_GROUP_ID?: string;
  @IsOptional() @IsString() KAFKA_DLQ_TOPIC?: string;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) KAFKA_PARTITIONS?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) KAFKA_REPLICATION_FACTOR?: number;
  @IsOptional() @Transform(toInt) @IsInt() @Min(24) KAFKA_RETENTION_HOURS?: number;

  @IsOptional()
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['redis', 'rediss'] })
  REDIS_URL?: string;
  @IsOptional() @IsString() REDIS_KEY_PREFIX?: string;

  @IsOptional()
  @IsUrl({ require_tld: false, require_protocol: true, protocols: ['mysql'] })
  MYSQL_URL?: string;
  @IsOptional() @Transform(toBool) MYSQL_MIGRATE_ON_START?: boolean;
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) @Max(1000) MYSQL_POOL_SIZE?: number;
}

export class ConfigError extends Error {}

export function validateEnv(env: Record<string, string | undefined>): EnvVars {
  const vars = plainToInstance(EnvVars, env, { excludeExtraneousValues: false });
  const errors = validateSync(vars, { skipMissingProperties: false, forbidUnknownValues: false });
  if (errors.length > 0) {
    const first = errors[0];
    const why = Object.values(first.constraints ?? {})[0] ?? 'is invalid';
    // The value is not echoed: it may be a secret.
    throw new ConfigError(`invalid configuration: ${why}`);
  }
  return vars;
}
