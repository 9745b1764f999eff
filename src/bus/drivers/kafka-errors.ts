/** Reading kafkajs errors: their `type` (the broker's error code name) and the per-topic reasons inside. */

/** Group-membership errors: kafkajs must see them to rejoin; everything else is retried by the consumer. */
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID']);

function errorType(err: unknown): string | undefined {
  const t = (err as { type?: unknown } | null)?.type;
  return typeof t === 'string' ? t : undefined;
}

export function isRebalanceError(err: unknown): boolean {
  return REBALANCE_ERRORS.has(errorType(err) ?? '');
}

export function isTopicAlreadyExists(err: unknown): boolean {
  if (errorType(err) === 'TOPIC_ALREADY_EXISTS') return true;
  const inner = (err as { errors?: unknown[] } | null)?.errors;
  return (
    Array.isArray(inner) && inner.length > 0 && inner.every((e) => errorType(e) === 'TOPIC_ALREADY_EXISTS')
  );
}

/** kafkajs aggregates per-topic failures; the useful reason is inside. */
export function describeKafkaError(err: unknown): string {
  const e = err as { message?: string; errors?: { message?: string; type?: string }[] };
  const inner = Array.isArray(e?.errors) ? e.errors.map((x) => x.type ?? x.message).join(', ') : '';
  return `${e?.message ?? String(err)}${inner ? ` (${inner})` : ''}`;
}
