// Two members of the chat example talking through Node's own WebSocket client (undici),
// a WebSocket implementation independent of the Python ones and of Chromium's.
// Usage: node chat_client.mjs ws://127.0.0.1:PORT   → prints one JSON line with what it saw.

const base = process.argv[2];
const deadline = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 20000);

// A client whose events can be awaited: next(type, test) resolves with the first event of
// that type (passing the test) that nobody has taken yet.
function join(room, name) {
  const ws = new WebSocket(`${base}/ws/${room}?name=${encodeURIComponent(name)}`);
  const queue = [];
  const waiting = [];
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const waiter = waiting.findIndex((w) => w.type === event.type && w.test(event));
    if (waiter >= 0) waiting.splice(waiter, 1)[0].resolve(event);
    else queue.push(event);
  };
  const client = {
    ws,
    next(type, test = () => true) {
      const index = queue.findIndex((event) => event.type === type && test(event));
      if (index >= 0) return Promise.resolve(queue.splice(index, 1)[0]);
      return new Promise((resolve) => waiting.push({ type, test, resolve }));
    },
    closed: new Promise((resolve) => { ws.onclose = (close) => resolve(close.code); }),
  };
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(client);
    ws.onerror = () => reject(new Error(`could not connect ${name}`));
  });
}

const alice = await join("node", "alice");
const welcome = await alice.next("welcome");
const bob = await join("node", "bob");
const joined = await alice.next("join", (event) => event.name === "bob");
bob.ws.send(JSON.stringify({ type: "message", text: "héllo from node ✓" }));
const message = await alice.next("message");
bob.ws.close(1000);
const bobClosed = await bob.closed;
const left = await alice.next("leave");
alice.ws.close(1000);
const aliceClosed = await alice.closed;
clearTimeout(deadline);
console.log(JSON.stringify({ welcome, joined, message, left, bobClosed, aliceClosed }));
