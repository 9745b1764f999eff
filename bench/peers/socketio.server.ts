/**
 * Socket.IO peer: rooms for conversations, an ack callback for sends, nothing persisted. With
 * PEER_REDIS_URL set it runs with `@socket.io/redis-adapter`, so two processes fan out through
 * Redis pub/sub like a production Socket.IO cluster. Started by peers-bench.ts with PORT set.
 */
import { createServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import Redis from 'ioredis';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http, { transports: ['websocket'], maxHttpBufferSize: 64 * 1024 });

if (process.env.PEER_REDIS_URL) {
  const pub = new Redis(process.env.PEER_REDIS_URL);
  const sub = pub.duplicate();
  io.adapter(createAdapter(pub, sub, { key: process.env.PEER_REDIS_KEY ?? 'socket.io' }));
}

let nextId = 0;
const node = process.pid.toString(36);

io.on('connection', (socket) => {
  const auth = socket.handshake.auth as { user_id?: string; join?: string[] };
  const userId = auth.user_id ?? 'anonymous';
  for (const room of auth.join ?? []) void socket.join(room);
  socket.on('send', (payload: { conversation_id: string; body: unknown }, ack?: (a: unknown) => void) => {
    const id = `s-${node}-${++nextId}`;
    const ts = Date.now();
    io.to(payload.conversation_id).emit('message', {
      id,
      conversation_id: payload.conversation_id,
      from: userId,
      ts,
      body: payload.body,
    });
    ack?.({ id, ts });
  });
});

http.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => process.send?.('ready'));
