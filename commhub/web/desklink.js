// desklink.js: a desk connection (signalling/PROTOCOL.md, "Desks"): one WebSocket with a
// desk token that sends `desk_join` instead of `join`, keeps itself alive, and comes back
// after a drop (a visitor regains its place within the desk's grace period, an agent its
// sessions). The call itself is a second connection (the call page), not this one.
//
// On a hub of several nodes it follows `redirect` like the call page's client (commhub.js):
// at once, same query, at most MAX_REDIRECTS in a row; retries after a drop start at the
// entry URL again; the probe of a refused upgrade goes to the node that refused it.
//
// A DeskLink is an EventTarget:
//   state    {state: connecting|connected|reconnecting|closed, reason?, retryIn?, node, redirects}
//   message  every hub message (desk_waiting, desk_state, desk_assigned, ...)
import { CommHub } from "/static/commhub.js";

const RETRYABLE_HTTP = new Set(["shutting_down", "upgrade_required", "cluster_unavailable"]);
const MAX_REDIRECTS = 3;
const NODE_URL = /^https?:\/\/[^\s/?#]+$/;
const FINAL_BYE = new Set(["replaced", "removed", "expired", "left"]);
const PING_EVERY = 10000;
const SILENT_LIMIT = 25000;

export class DeskLink extends EventTarget {
  constructor({ url = location.origin, token, status = null, backoff = {} } = {}) {
    super();
    this.http = url.replace(/\/$/, ""); // the entry URL
    this.node = this.http; // the node of the current socket
    this.redirects = 0;
    this.redirectsInRow = 0;
    this.token = token;
    this.status = status; // an agent's status, sent again with every desk_join
    this.backoff = { base: 500, max: 10000, ...backoff };
    this.state = "idle";
    this.reason = null;
    this.ws = null;
    this.seq = 0;
    this.attempt = 0;
    this.everJoined = false;
    this.pending = new Map(); // our message id -> {resolve, reject, types}
    this.timers = { retry: 0, ping: 0 };
    this.lastRx = 0;
    this.hint = null;
    this.onOnline = () => { if (this.state === "reconnecting" && !this.ws) this.retryNow(); };
  }

  start() {
    window.addEventListener("online", this.onOnline);
    this.open();
  }

  /** Send `msg`; resolves with the hub's answer to it (by ref), rejects with its error. */
  request(msg) {
    const id = `${msg.type.replace("desk_", "")}-${++this.seq}`;
    return new Promise((resolve, reject) => {
      if (!this.connected()) return reject({ code: "disconnected", message: "" });
      this.pending.set(id, { resolve, reject });
      this.send({ ...msg, id });
    });
  }

  /** desk_join again on the open connection (after desk_ended or desk_unavailable). */
  rejoin() {
    if (!this.connected()) return this.retryNow();
    this.joinId = `join-${++this.seq}`;
    this.send({ type: "desk_join", id: this.joinId, ...(this.status && { status: this.status }) });
  }

  /** Leave for good: the hub is told (desk_leave), nothing comes back. */
  leave() {
    if (this.state === "closed") return;
    if (this.connected()) this.send({ type: "desk_leave", id: `leave-${++this.seq}` });
    this.finish({ code: "left", message: "" });
  }

  connected() { return this.state === "connected" && this.ws && this.ws.readyState === WebSocket.OPEN; }

  // -- connection ------------------------------------------------------------------------

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(state, extra = {}) {
    this.state = state;
    if ("reason" in extra) this.reason = extra.reason;
    this.emit("state", { state, reason: this.reason, ...extra, node: this.node, redirects: this.redirects });
  }

  signalUrl() { return `${this.node}/v1/signal?access_token=${encodeURIComponent(this.token)}`; }

  // after a drop: through the entry URL (it routes us to the desk's node of the moment)
  retryNow() { clearTimeout(this.timers.retry); this.node = this.http; this.redirectsInRow = 0; this.open(); }

  open() {
    clearTimeout(this.timers.retry);
    if (this.state === "closed") return;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { attempt: this.attempt });
    const ws = new WebSocket(this.signalUrl().replace(/^http/, "ws"));
    this.ws = ws;
    ws.onopen = () => {
      this.lastRx = Date.now();
      this.joinId = `join-${++this.seq}`;
      this.send({ type: "desk_join", id: this.joinId, ...(this.status && { status: this.status }) });
    };
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      this.onMessage(msg);
    };
    ws.onclose = (e) => { if (ws === this.ws) this.dropped(e.code); };
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(msg)); return true; }
    return false;
  }

  onMessage(msg) {
    if (msg.type === "pong") return;
    if (msg.type === "redirect") return this.onRedirect(msg);
    if (msg.type === "server_shutdown") { this.hint = Math.max(0, msg.reconnect_after * 1000); return this.dropped(1001); }
    if (msg.type === "bye") {
      if (FINAL_BYE.has(msg.reason)) return this.finish({ code: msg.reason, message: msg.message || "" });
      return this.dropped(1000);
    }
    // the answer to desk_join (any of them) means we are in: connected
    if (msg.ref && msg.ref === this.joinId && msg.type !== "error") {
      this.everJoined = true;
      this.attempt = 0;
      this.redirectsInRow = 0;
      this.heartbeat();
      this.setState("connected", { reason: null });
    }
    const waiter = msg.ref && this.pending.get(msg.ref);
    if (waiter) {
      this.pending.delete(msg.ref);
      if (msg.type === "error") waiter.reject(msg); else waiter.resolve(msg);
    }
    if (msg.type === "error" && msg.fatal) return this.finish({ code: msg.code, message: msg.message });
    this.emit("message", msg);
  }

  heartbeat() {
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastRx > SILENT_LIMIT) return this.dropped(4000); // half-open
      this.send({ type: "ping" });
    }, PING_EVERY);
  }

  // `redirect {url, reason}`: the desk runs on that node; the hub closes this socket (4010)
  onRedirect(msg) {
    const url = typeof msg.url === "string" && NODE_URL.test(msg.url) ? msg.url : null;
    if (!url) return; // not one we may follow: the close that comes is a drop
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onclose = ws.onmessage = ws.onopen = null; try { ws.close(); } catch { /* closed */ } }
    clearInterval(this.timers.ping);
    this.failPending({ code: "disconnected", message: "" });
    if (this.state === "closed") return;
    this.redirectsInRow += 1;
    const reason = { code: "redirect", message: msg.reason, from: this.node, to: url };
    if (this.redirectsInRow > MAX_REDIRECTS) {
      this.redirectsInRow = 0;
      this.setState(this.everJoined ? "reconnecting" : "connecting", { reason });
      return this.scheduleRetry(null);
    }
    this.redirects += 1; // followed, in all
    this.node = url;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { reason });
    this.open();
  }

  failPending(reason) {
    for (const w of this.pending.values()) w.reject(reason);
    this.pending.clear();
  }

  dropped(code) {
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onclose = ws.onmessage = ws.onopen = null; try { ws.close(); } catch { /* closed */ } }
    clearInterval(this.timers.ping);
    this.failPending({ code: "disconnected", message: "" });
    if (this.state === "closed") return;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { reason: { code: "disconnected", message: "" }, closeCode: code });
    // why was it refused? The same GET without upgrade headers says (an expired token...)
    CommHub.check(this.signalUrl()).then((reason) => {
      if (reason && reason.final) return this.finish(reason);
      this.scheduleRetry(reason && RETRYABLE_HTTP.has(reason.code) ? reason : null);
    });
  }

  scheduleRetry(reason) {
    if (this.state === "closed") return;
    const { base, max } = this.backoff;
    const step = Math.min(max, base * 2 ** Math.min(this.attempt, 10));
    let delay = step / 2 + Math.random() * step / 2;
    if (this.hint !== null) { delay = this.hint + Math.random() * 1000; this.hint = null; }
    this.attempt += 1;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { reason: reason || this.reason, retryIn: Math.round(delay), attempt: this.attempt });
    this.timers.retry = setTimeout(() => this.retryNow(), delay);
  }

  finish(reason) {
    if (this.state === "closed") return;
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onclose = ws.onmessage = null; try { ws.close(1000); } catch { /* closed */ } }
    this.failPending(reason);
    this.setState("closed", { reason });
  }
}
