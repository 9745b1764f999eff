// The package's public entry point (the one place that re-exports).
export { connect, RelayClient } from './relay-client.js';
export type {
  Ack,
  ClientEvents,
  ConnectionState,
  ConnectOptions,
  DisconnectEvent,
  Message,
  PresenceChange,
  PresenceEvents,
  PresenceSubscription,
  Receipt,
  ResetEvent,
  SendOptions,
  Session,
  TypingEvent,
} from './relay-client.js';
export { RelayError } from './errors.js';
export type { ClientErrorCode, RelayErrorCode } from './errors.js';
export { fileStorage, localStorageStorage, memoryStorage } from './storage.js';
export type { CursorStorage, FileSystemLike, WebStorageLike } from './storage.js';
export { CloseCode, SERVER_ERROR_CODES } from './protocol.js';
export type {
  AckPayload,
  ClientFrame,
  ErrorPayload,
  MessagePayload,
  PresencePayload,
  ReceiptPayload,
  ServerErrorCode,
  ServerFrame,
  TypingPayload,
  WelcomePayload,
} from './protocol.js';
export type { WebSocketConstructor, WebSocketLike } from './socket.js';
export type { Transport } from './transport.js';
export type { FetchLike } from './long-poll-socket.js';
