import { Logger } from '@nestjs/common';
import { LogEntry, logCreator, logLevel } from 'kafkajs';

/**
 * Fields of a kafkajs log entry that are safe and useful to print. Everything else (stack traces,
 * request payloads, connection options that could carry SASL/SSL material) is dropped: an allow-list,
 * so a new kafkajs field can never leak a secret into the logs.
 */
const SAFE_FIELDS = [
  'error',
  'groupId',
  'topic',
  'partition',
  'retryCount',
  'retryTime',
  'broker',
  'memberId',
];

/**
 * kafkajs lines the driver handles itself and reports in its own words: printed at debug level only.
 * (A CreateTopics answer with TOPIC_ALREADY_EXISTS, when another node created the topic first.)
 */
const HANDLED = [/^Response CreateTopics\b/];

/** One line per (namespace, message) per window; repeats are counted and reported with the next line. */
const WINDOW_MS = 10_000;
const MAX_KEYS = 1_000;

/**
 * Routes kafkajs logs to Nest's Logger. kafkajs is chatty (one ERROR line per failed connection
 * attempt and per retry while a broker is down), so the client is created with logLevel WARN and
 * identical lines are rate limited.
 */
export function nestLogCreator(context = 'kafkajs'): logCreator {
  const logger = new Logger(context);
  const seen = new Map<string, { until: number; suppressed: number }>();
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      if (HANDLED.some((re) => re.test(log.message))) {
        logger.debug(`[${namespace}] ${log.message}`);
        return;
      }
      const key = `${namespace}|${log.message}`;
      const now = Date.now();
      const prev = seen.get(key);
      if (prev && now < prev.until) {
        prev.suppressed++;
        return;
      }
      if (seen.size >= MAX_KEYS) seen.clear();
      seen.set(key, { until: now + WINDOW_MS, suppressed: 0 });

      const extra = SAFE_FIELDS.filter((f) => log[f] !== undefined && log[f] !== null)
        .map((f) => `${f}=${String(log[f])}`)
        .join(' ');
      const repeats = prev && prev.suppressed > 0 ? ` (${prev.suppressed} similar suppressed)` : '';
      const line = `[${namespace}] ${log.message}${extra ? ` (${extra})` : ''}${repeats}`;
      switch (level) {
        case logLevel.ERROR:
        case logLevel.NOTHING:
          logger.error(line);
          break;
        case logLevel.WARN:
          logger.warn(line);
          break;
        case logLevel.INFO:
          logger.log(line);
          break;
        default:
          logger.debug(line);
      }
    };
}
