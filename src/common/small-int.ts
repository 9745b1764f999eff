/**
 * `n`, stored the compact way when it can be. V8 keeps an integer in int32 range (a Smi) in the
 * object's field itself; any other number is a separate 16-byte heap number. Arithmetic on doubles
 * yields a heap number even when the result is integral (`Date.now() - origin` does), so values kept
 * per connection go through here: `| 0` turns an integral int32 value into a Smi, and anything else
 * (fractions, values beyond int32) stays as it was.
 */
export function smallInt(n: number): number {
  return (n | 0) === n ? n | 0 : n;
}
