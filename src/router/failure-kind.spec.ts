import { DirectoryUnavailableError } from '../directory/conversation-directory';
import { describeError, isOutageError, poisonReason, rootError, RoutingError } from './failure-kind';

/** The shapes the drivers really produce, built by hand. */
const withFields = (message: string, fields: Record<string, unknown>) =>
  Object.assign(new Error(message), fields);
/** TypeORM's QueryFailedError keeps mysql2's error in `driverError`. */
const typeorm = (inner: Error) => withFields(`query failed: ${inner.message}`, { driverError: inner });

describe('isOutageError', () => {
  it.each([
    [
      'mysql2 refused',
      withFields('connect ECONNREFUSED 127.0.0.1:3306', { code: 'ECONNREFUSED', fatal: true }),
    ],
    [
      'mysql2 connection lost',
      withFields('Connection lost: The server closed the connection.', { code: 'PROTOCOL_CONNECTION_LOST' }),
    ],
    [
      'mysql2 closed state',
      withFields("Can't add new command when connection is in closed state", { fatal: true }),
    ],
    ['connect timeout', withFields('connect ETIMEDOUT', { code: 'ETIMEDOUT' })],
    ['reset', withFields('read ECONNRESET', { code: 'ECONNRESET', errno: -104 })],
    [
      'deadlock via TypeORM',
      typeorm(withFields('Deadlock found', { errno: 1213, code: 'ER_LOCK_DEADLOCK' })),
    ],
    ['lock wait timeout', typeorm(withFields('Lock wait timeout exceeded', { errno: 1205 }))],
    [
      'too many connections',
      typeorm(withFields('Too many connections', { errno: 1040, code: 'ER_CON_COUNT_ERROR' })),
    ],
    ['read-only server', typeorm(withFields('running with --read-only', { errno: 1290 }))],
    ['missing table', typeorm(withFields("Table 'relay.outbox' doesn't exist", { errno: 1146 }))],
    ['pool closed', new Error('Pool is closed.')],
    ['ioredis closed', new Error('Connection is closed.')],
    [
      'ioredis retries',
      withFields('Reached the max retries per request limit', { name: 'MaxRetriesPerRequestError' }),
    ],
    ['fetch timeout', withFields('The operation was aborted due to timeout', { name: 'TimeoutError' })],
    [
      'fetch refused',
      new TypeError('fetch failed', { cause: withFields('connect ECONNREFUSED', { code: 'ECONNREFUSED' }) }),
    ],
    ['directory 503', new DirectoryUnavailableError('conversation service answered 503')],
    [
      'wrapped by the router',
      new RoutingError('outbox', typeorm(withFields('gone', { code: 'PROTOCOL_CONNECTION_LOST' }))),
    ],
    [
      'inside an AggregateError',
      new AggregateError([new Error('x'), withFields('y', { code: 'EHOSTUNREACH' })]),
    ],
  ])('%s: outage', (_, err) => {
    expect(isOutageError(err)).toBe(true);
  });

  it.each([
    ['stack overflow in JSON.stringify', new RangeError('Maximum call stack size exceeded')],
    [
      'data too long',
      typeorm(withFields("Data too long for column 'payload'", { errno: 1406, code: 'ER_DATA_TOO_LONG' })),
    ],
    ['check constraint', typeorm(withFields('CONSTRAINT `outbox.payload` failed', { errno: 4025 }))],
    ['invalid id', new Error('invalid outbox message id "x"')],
    ['directory 400', new Error('conversation service answered 400')],
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'length')")],
    ['not an error', 'weird'],
    ['null', null],
  ])('%s: not an outage', (_, err) => {
    expect(isOutageError(err)).toBe(false);
  });

  it('survives cyclic causes', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(isOutageError(a)).toBe(false);
  });
});

describe('poisonReason and describeError', () => {
  it('labels by the stage that failed', () => {
    expect(
      poisonReason(new RoutingError('serialize', new RangeError('Maximum call stack size exceeded'))),
    ).toBe('unserializable');
    expect(poisonReason(new RoutingError('outbox', new Error('x')))).toBe('outbox_rejected');
    expect(poisonReason(new RoutingError('directory', new Error('x')))).toBe('directory_rejected');
    expect(poisonReason(new Error('x'))).toBe('failed');
    const inner = new Error('inner');
    expect(rootError(new RoutingError('outbox', inner))).toBe(inner);
    expect(rootError(inner)).toBe(inner);
  });

  it('bounds the description', () => {
    expect(describeError(new RangeError('deep'))).toBe('RangeError: deep');
    expect(describeError(new Error('x'.repeat(1_000)))).toHaveLength(503);
    expect(describeError(42)).toBe('42');
  });
});
