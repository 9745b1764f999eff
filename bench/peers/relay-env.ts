/**
 * The environment of a relay process under benchmark: dev auth on loopback, quiet logs, and every
 * per-connection and per-address budget out of the way, so the bench measures the path, not the limits.
 */
export function benchRelayEnv(port: number): Record<string, string> {
  return {
    NODE_ENV: 'development',
    AUTH_MODE: 'dev',
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    DEBUG_CONSOLE: 'false',
    SEND_RATE_PER_SEC: '1000000',
    SEND_BURST: '1000000',
    FRAME_RATE_PER_SEC: '1000000',
    FRAME_BURST: '1000000',
    CONNECT_RATE_PER_IP: '1000000',
    CONNECT_BURST_PER_IP: '1000000',
    MAX_CONNECTIONS: '19000',
    MAX_CONNECTIONS_PER_IP: '100000',
    PREHELLO_SOFT_LIMIT: '100000',
    MAX_PENDING_HANDSHAKES: '100000',
  };
}
