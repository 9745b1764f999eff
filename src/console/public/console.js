// relay debug console: plain browser JS, no build. Every API call carries the admin key (if typed).
'use strict';

const $ = (id) => document.getElementById(id);
const MAX_LINES = 500;
let tailAbort = null;

function headers() {
  const key = $('key').value.trim();
  sessionStorage.setItem('relay-console-key', key);
  return key ? { authorization: `Bearer ${key}` } : {};
}

async function api(path) {
  const res = await fetch(`/console/api/${path}`, { headers: headers() });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${res.status}: ${body.message ?? res.statusText}`);
  return body;
}

function show(id, promise) {
  $(id).classList.remove('bad');
  promise.then(
    (data) => ($(id).textContent = JSON.stringify(data, null, 2)),
    (err) => {
      $(id).classList.add('bad');
      $(id).textContent = String(err.message ?? err);
    },
  );
}

function refresh() {
  show(
    'overview',
    api('overview').then((o) => ({
      'this node': o.node,
      'live nodes': o.nodes.map((n) =>
        n in o.connections ? `${n}: ${o.connections[n]} connections` : `${n}: (count on that node)`,
      ),
      'open tails': `${o.tail.subscribers} of ${o.tail.maxSubscribers}`,
      'auth mode': o.authMode,
    })),
  );
}

function line(text, kind) {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = text;
  const log = $('tail-log');
  log.appendChild(li);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function describe(e) {
  const time = new Date(e.at).toISOString().slice(11, 23);
  switch (e.kind) {
    case 'ack':
      return `${time} ack       ${e.conversation} from ${e.user} id=${e.msg_id} ref=${e.ref}`;
    case 'delivery':
      return `${time} delivery  ${e.conversation} ${e.from} -> ${e.user} seq=${e.seq} id=${e.msg_id} ${e.body}`;
    case 'error':
      return `${time} error     ${e.conversation ?? '-'} ${e.user} ${e.code}: ${e.message}${e.ref ? ` ref=${e.ref}` : ''}`;
    case 'dropped':
      return `${time} dropped   ${e.count} events (the page did not keep up)`;
    default:
      return `${time} ${e.kind} ${JSON.stringify(e)}`;
  }
}

// EventSource cannot send an Authorization header, so the stream is read with fetch and parsed here.
async function startTail() {
  stopTail();
  const kind = $('tail-kind').value;
  const id = $('tail-id').value.trim();
  if (!id) return;
  const abort = new AbortController();
  tailAbort = abort;
  $('tail-start').disabled = true;
  $('tail-stop').disabled = false;
  $('tail-status').textContent = `connecting to ${kind} ${id}…`;
  try {
    const res = await fetch(`/console/api/tail?${kind}=${encodeURIComponent(id)}`, {
      headers: headers(),
      signal: abort.signal,
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(`${res.status}: ${body.message ?? res.statusText}`);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        onEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    if (tailAbort === abort) $('tail-status').textContent = 'tail closed by the server';
  } catch (err) {
    if (!abort.signal.aborted) $('tail-status').textContent = `tail failed: ${err.message ?? err}`;
  } finally {
    if (tailAbort === abort) {
      tailAbort = null;
      $('tail-start').disabled = false;
      $('tail-stop').disabled = true;
    }
  }

  function onEvent(block) {
    let name = 'message';
    let data = '';
    for (const row of block.split('\n')) {
      if (row.startsWith('event: ')) name = row.slice(7);
      else if (row.startsWith('data: ')) data += row.slice(6);
    }
    if (!data) return; // a keepalive comment
    const event = JSON.parse(data);
    if (name === 'ready') $('tail-status').textContent = `tailing ${kind} ${id}`;
    else line(describe(event), event.kind);
  }
}

function stopTail() {
  if (!tailAbort) return;
  tailAbort.abort();
  tailAbort = null;
  $('tail-status').textContent = 'not tailing';
  $('tail-start').disabled = false;
  $('tail-stop').disabled = true;
}

$('key').value = sessionStorage.getItem('relay-console-key') ?? '';
$('refresh').onclick = refresh;
$('user-go').onclick = () => show('user-out', api(`users/${encodeURIComponent($('user-id').value.trim())}`));
$('conv-go').onclick = () =>
  show('conv-out', api(`conversations/${encodeURIComponent($('conv-id').value.trim())}`));
$('tail-start').onclick = () => void startTail();
$('tail-stop').onclick = stopTail;
refresh();
