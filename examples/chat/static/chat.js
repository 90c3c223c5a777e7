// The chat client: one WebSocket to /ws/{room}?name=..., JSON events in and out.
// No build step and no dependencies. The connection state is mirrored on
// <body data-state="..."> ("idle", "connecting", "open", "reconnecting", "closed") and on
// window.chat, so a person sees it in the header and a test can wait for it.
"use strict";

const $ = (id) => document.getElementById(id);
const chat = { state: "idle", socket: null, room: "", name: "", id: null, retries: 0, timer: null };
window.chat = chat;

// Close codes after which reconnecting would only fail the same way again.
const FINAL_CODES = new Set([1003, 1008]);

function setState(state, detail) {
  chat.state = state;
  document.body.dataset.state = state;
  $("status").textContent = detail;
  $("text").disabled = $("send").disabled = state !== "open";
}

function socketUrl(room, name) {
  // Relative to the page, so the app also works mounted under a path prefix.
  const url = new URL("ws/" + encodeURIComponent(room), location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ name }).toString();
  url.hash = "";
  return url.href;
}

// Everything from the network goes through textContent, never innerHTML.
function addLine(className, ...parts) {
  const log = $("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  const item = document.createElement("li");
  item.className = className;
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    item.append(span);
  }
  log.append(item);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function showMessage(event) {
  const time = new Date(event.time * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const mine = event.id === chat.id ? " mine" : "";
  addLine("message" + mine, ["time", time], ["who", event.name], ["text", event.text]);
}

function showMembers(members) {
  const list = $("members");
  list.replaceChildren(...members.map((member) => {
    const item = document.createElement("li");
    item.textContent = member.name + (member.id === chat.id ? " (you)" : "");
    return item;
  }));
}

function handle(event) {
  switch (event.type) {
    case "welcome":
      chat.id = event.id;
      chat.name = event.name;
      $("log").replaceChildren();
      event.history.forEach(showMessage);
      showMembers(event.members);
      setState("open", `#${event.room} as ${event.name}`);
      break;
    case "join":
      showMembers(event.members);
      addLine("presence", ["", `${event.name} joined`]);
      break;
    case "leave":
      showMembers(event.members);
      addLine("presence", ["", `${event.name} ${event.reason === "left" ? "left" : event.reason}`]);
      break;
    case "message":
      showMessage(event);
      break;
    case "error":
      addLine("error", ["", event.error]);
      break;
  }
}

function connect() {
  clearTimeout(chat.timer);
  setState("connecting", `Connecting to #${chat.room}…`);
  const socket = new WebSocket(socketUrl(chat.room, chat.name));
  chat.socket = socket;
  socket.onmessage = (message) => handle(JSON.parse(message.data));
  socket.onclose = (close) => {
    if (chat.socket !== socket) return; // a newer connection replaced this one
    chat.socket = null;
    const why = close.reason || `code ${close.code}`;
    if (FINAL_CODES.has(close.code)) {
      setState("closed", `Disconnected: ${why}`);
      return;
    }
    // Server restarts (1012), shutdowns (1001), drops (1013) and network trouble: retry,
    // backing off so that a crowd of clients does not hammer a recovering server.
    const delay = Math.min(30000, 500 * 2 ** chat.retries++);
    setState("reconnecting", `Disconnected (${why}); retrying in ${Math.ceil(delay / 1000)} s`);
    chat.timer = setTimeout(connect, delay);
  };
  socket.onopen = () => { chat.retries = 0; };
}

function join(room, name) {
  chat.room = room;
  chat.name = name;
  chat.retries = 0;
  // Remember the choice in the address, so a reload (or a shared link) rejoins.
  history.replaceState(null, "", "?" + new URLSearchParams({ room, name }).toString());
  if (chat.socket) {
    const old = chat.socket;
    chat.socket = null;
    old.close(1000, "switching rooms");
  }
  connect();
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  join($("room").value.trim(), $("name").value.trim());
});

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || chat.state !== "open") return;
  chat.socket.send(JSON.stringify({ type: "message", text }));
  $("text").value = "";
  $("text").focus();
});

const params = new URLSearchParams(location.search);
if (params.get("room") && params.get("name")) {
  $("room").value = params.get("room");
  $("name").value = params.get("name");
  join(params.get("room"), params.get("name"));
}
