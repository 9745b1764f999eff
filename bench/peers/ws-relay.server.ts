/**
 * The floor relay is measured against: a minimal raw `ws` relay that persists nothing. It speaks
 * relay's frames (hello -> welcome, send -> ack, message) so one load generator drives both;
 * membership comes from the `join` query parameter. Started by peers-bench.ts with PORT set.
 */
import { createServer } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';

const rooms = new Map<string, Set<WebSocket>>();
let nextId = 0;

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 64 * 1024 });

wss.on('connection', (ws, req) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const userId = url.searchParams.get('user_id') ?? 'anonymous';
  const joined = (url.searchParams.get('join') ?? '').split(',').filter(Boolean);
  for (const room of joined) {
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(ws);
  }
  ws.on('close', () => {
    for (const room of joined) rooms.get(room)?.delete(ws);
  });
  ws.on('message', (data) => {
    let frame: { type?: string; msg_id?: string; payload?: { conversation_id?: string; body?: unknown } };
    try {
      frame = JSON.parse(data.toString()) as typeof frame;
    } catch {
      return;
    }
    if (frame.type === 'hello') {
      ws.send(JSON.stringify({ type: 'welcome', payload: { user_id: userId } }));
    } else if (frame.type === 'send' && frame.payload?.conversation_id) {
      const id = `w-${++nextId}`;
      const ts = Date.now();
      ws.send(JSON.stringify({ type: 'ack', msg_id: id, payload: { ref: frame.msg_id, ts } }));
      const out = JSON.stringify({
        type: 'message',
        msg_id: id,
        payload: {
          id,
          conversation_id: frame.payload.conversation_id,
          from: userId,
          ts,
          body: frame.payload.body,
        },
      });
      for (const member of rooms.get(frame.payload.conversation_id) ?? []) member.send(out);
    }
  });
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => process.send?.('ready'));
