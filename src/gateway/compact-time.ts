import { smallInt } from '../common/small-int';

/**
 * Times kept per connection, as small integers. V8 stores an integer that fits 31 bits in the field
 * itself; Date.now() does not, so each field holding one costs a 16-byte heap number besides. Times
 * counted from this module's load fit for ~24 days, after which they are ordinary numbers again
 * (correct, just not smaller): only memory depends on it.
 */
const ORIGIN = Date.now();

export function toCompactTime(epochMs: number): number {
  return smallInt(epochMs - ORIGIN);
}

export function fromCompactTime(compact: number): number {
  return compact + ORIGIN;
}
