import { IngressMessage } from './envelope';

/**
 * Checks for relay's internal wire formats (bus records, ...), applied wherever such a record is read
 * back from a backend. TODO(issue 9): compiled JSON schemas.
 */
export function isIngressMessage(v: unknown): v is IngressMessage {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    typeof m.id === 'string' &&
    typeof m.conversation_id === 'string' &&
    typeof m.from === 'string' &&
    typeof m.ts === 'number' &&
    typeof m.ref === 'string'
  );
}
