// commhub.js: a small embeddable browser client for one commhub room (no build step, no
// dependencies). A CommHub is an EventTarget:
//   state         {state: connecting|connected|reconnecting|closed, reason?, retryIn?, mode, media, direct,
//                 node, redirects}  (node: the base URL of the node the socket is at)
//   joined        the hub's `joined` (every time, reconnections included)
//   participants  [participant] whenever someone comes, goes or changes
//   chat          a chat message;  history: the recent chat of a (re)join
//   caption       partial and final captions;  notice: caption_unavailable / caption_degraded /
//                 media_closed / media_restored
//   track         a remote track arrived {key, participant, kind, meta, track, stream, receiver, via}
//   trackended    it went away;  trackinfo: a publication's metadata changed (muted, source)
//   mode          media_mode;  outbox: the chat messages not yet confirmed;  error: hub errors
//   moderation    moderated / track_blocked / report_filed / reported / moderation_action
//
// Media: one RTCPeerConnection with the hub (what we publish; what the hub relays in sfu rooms)
// and, when the hub puts a two-party room in p2p mode, a direct one with the other party.
// Both renegotiate by the W3C "perfect negotiation" pattern. The hub never rolls back, so we
// are its polite side; on the direct connection the hub's `offerer` is the impolite one.
// Every step of signalling and negotiation runs on one promise chain, in arrival order.
//
// Several nodes (signalling/PROTOCOL.md): a node may answer `redirect {url}` and close 4010;
// we open that node at once with the same query, staying connecting/reconnecting, at most
// MAX_REDIRECTS times in a row. The URL we were given is the entry URL: every retry after a
// drop starts there again. The probe of a refused upgrade goes to the node that refused it.

const RETRYABLE_HTTP = new Set(["shutting_down", "upgrade_required", "cluster_unavailable"]);
const MAX_REDIRECTS = 3; // followed in a row (no `joined` between); then back off as after a drop
const NODE_URL = /^https?:\/\/[^\s/?#]+$/; // what a redirect may name: a base URL (its schema)
const FINAL_BYE = new Set(["replaced", "removed", "room_closed", "expired", "left"]);
const PING_EVERY = 10000; // ms between our pings while connected
const SILENT_LIMIT = 25000; // ms without any frame from the hub: the socket is dead
const JOIN_WAIT = 20000; // ms from opening the socket to `joined`

export class CommHub extends EventTarget {
  constructor({ url = location.origin, token, room, name, speak, read, p2p = true, backoff = {}, debug = false } = {}) {
    super();
    this.debug = debug; // log signalling (types, and the mids of every description)
    this.http = url.replace(/\/$/, ""); // the entry URL: every retry after a drop starts here
    this.node = this.http; // the node of the current socket (a redirect moves it)
    this.redirects = 0; // redirects followed, in all
    this.redirectsInRow = 0;
    this.token = token;
    this.roomName = room; // only for tokens valid in any room
    this.prefs = { name, speak, read };
    this.p2p = p2p;
    this.backoff = { base: 500, max: 15000, ...backoff };
    this.state = "idle";
    this.reason = null;
    this.me = null;
    this.room = null;
    this.participants = new Map(); // participant id -> participant
    this.publications = new Map(); // "participant/track id" (ids are per publisher) -> {participant, track}
    this.remote = new Map(); // key -> remote track entry
    this.local = { audio: null, video: null }; // tracks we publish
    this.muted = { audio: false, video: false };
    this.stream = new MediaStream(); // msid stream of our tracks
    this.mode = "sfu";
    this.pc = null; // with the hub
    this.direct = null; // with the peer in p2p mode
    this.peer = null;
    this.polite = true;
    this.slots = new Map(); // hub mid -> track_slot
    this.announced = new Map(); // our msid -> "source/muted" last sent
    this.outbox = [];
    this.seq = 0;
    this.attempt = 0;
    this.chain = Promise.resolve();
    this.queuedOffers = { hub: 0, direct: 0 }; // remote offers received, not yet handled
    this.ws = null;
    this.joinedHere = false; // the current socket got `joined`
    this.everJoined = false;
    this.hint = null; // ms the hub asked us to wait (server_shutdown)
    this.timers = { retry: 0, ping: 0, join: 0 };
    this.lastRx = 0;
    this.onOnline = () => { if (this.state === "reconnecting" && !this.ws) this.retryNow(); };
  }

  // -- public API ------------------------------------------------------------------------

  /** Connect and join; resolves with `joined`, rejects with {code, message} if refused. */
  join() {
    if (this.state !== "idle") throw new Error("join() once per CommHub");
    window.addEventListener("online", this.onOnline);
    const p = new Promise((resolve, reject) => { this.firstJoin = { resolve, reject }; });
    this.open();
    return p;
  }

  leave() {
    if (this.state === "closed") return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.joinedHere) this.send({ type: "leave" });
    this.finish({ code: "left", message: "" });
  }

  /** Send a chat message now, or queue it while the hub is out of reach. */
  chat(text) {
    text = String(text).trim();
    if (!text) return null;
    const item = { id: "chat-" + ++this.seq, text, status: "queued", at: Date.now() };
    if (this.state === "closed") Object.assign(item, { status: "failed", reason: "closed" });
    else if (this.outbox.filter((i) => i.status !== "failed").length >= 50) Object.assign(item, { status: "failed", reason: "outbox_full" });
    this.outbox.push(item);
    this.flush();
    this.emit("outbox", this.outbox.slice());
    return item;
  }

  // Report another participant (reason: harassment, hate, sexual, violence, spam, self_harm,
  // impersonation, other); the hub answers `reported` (a moderation event) or an error.
  report(participant, reason, note = "") {
    const msg = { type: "report", id: "report-" + ++this.seq, participant, reason };
    if (note.trim()) msg.note = note.trim().slice(0, 1000);
    return this.send(msg) ? msg.id : null;
  }

  setLanguage({ speak, read }) {
    if (speak) this.prefs.speak = speak;
    if (read) this.prefs.read = read;
    if (this.connected()) this.send({ type: "set_language", ...(speak && { speak }), ...(read && { read }) });
  }

  /** Publish `track` as our microphone (null: none). Replaces the one before without a gap. */
  setMicrophone(track) { return this.setLocal("audio", track); }

  /** Publish `track` as our camera (null: camera off). */
  setCamera(track) { return this.setLocal("video", track); }

  setMuted(kind, muted) {
    this.muted[kind] = !!muted;
    const t = this.local[kind];
    if (t) t.enabled = !muted;
    this.run(() => this.announce());
  }

  connected() { return this.state === "connected" && this.ws && this.ws.readyState === WebSocket.OPEN; }

  /** Inbound RTP totals of a remote entry (for meters and tests). */
  async inbound(entry) {
    let bytes = 0, frames = 0, level = 0;
    (await entry.receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") { bytes += s.bytesReceived || 0; frames += s.framesDecoded || 0; level = s.audioLevel || level; }
    });
    return { bytes, frames, level };
  }

  // -- connection and recovery -----------------------------------------------------------

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(state, extra = {}) {
    this.state = state;
    if ("reason" in extra) this.reason = extra.reason;
    this.emit("state", { state, reason: this.reason, ...extra, ...this.mediaState(), node: this.node, redirects: this.redirects });
  }

  mediaState() {
    return {
      mode: this.mode,
      media: this.pc ? this.pc.connectionState : "none",
      direct: this.direct ? this.direct.connectionState : "none",
    };
  }

  open() {
    clearTimeout(this.timers.retry);
    if (this.state === "closed") return;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { attempt: this.attempt });
    const ws = new WebSocket(this.signalUrl().replace(/^http/, "ws"));
    this.ws = ws;
    this.joinedHere = false;
    // an upgrade that hangs, or a hub that never answers `join`, counts as a drop
    clearTimeout(this.timers.join);
    this.timers.join = setTimeout(() => { if (ws === this.ws && !this.joinedHere) this.dropped(4008); }, JOIN_WAIT);
    ws.onopen = () => {
      this.lastRx = Date.now();
      const join = { type: "join", capabilities: { p2p: this.p2p } };
      for (const k of ["name", "speak", "read"]) if (this.prefs[k]) join[k] = this.prefs[k];
      this.send(join);
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

  // the same query on every node: the token, and the room of an any-room token
  signalUrl(node = this.node) {
    const room = this.roomName ? `&room=${encodeURIComponent(this.roomName)}` : "";
    return `${node}/v1/signal?access_token=${encodeURIComponent(this.token)}${room}`;
  }

  // `redirect {url, reason}`: the room runs on that node; the hub closes this socket (4010).
  onRedirect(msg) {
    const url = typeof msg.url === "string" && NODE_URL.test(msg.url) ? msg.url.replace(/\/$/, "") : null;
    if (!url) return; // not one we may follow: the close that comes is a drop
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onclose = ws.onmessage = ws.onopen = null; try { ws.close(); } catch { /* closed */ } }
    clearInterval(this.timers.ping);
    this.joinedHere = false;
    this.run(() => this.teardownMedia());
    if (this.state === "closed") return;
    this.requeueOutbox();
    this.redirectsInRow += 1;
    const reason = { code: "redirect", message: msg.reason, from: this.node, to: url };
    if (this.redirectsInRow > MAX_REDIRECTS) { // a loop, or lease churn: back off, then the entry URL
      this.redirectsInRow = 0;
      this.setState(this.everJoined ? "reconnecting" : "connecting", { reason });
      return this.scheduleRetry(null);
    }
    this.redirects += 1; // followed, in all
    this.node = url;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { reason });
    this.open();
  }

  // The signalling socket is gone (closed, or silent for too long).
  dropped(code) {
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onclose = ws.onmessage = ws.onopen = null; try { ws.close(); } catch { /* already closed */ } }
    clearInterval(this.timers.ping);
    const wasJoined = this.joinedHere;
    this.joinedHere = false;
    this.run(() => this.teardownMedia());
    if (this.state === "closed") return;
    this.requeueOutbox();
    this.setState(this.everJoined ? "reconnecting" : "connecting", { reason: { code: "disconnected", message: "" }, closeCode: code });
    if (wasJoined) this.scheduleRetry(null);
    else this.preflight().then((reason) => this.scheduleRetry(reason));
  }

  /** Would the hub take this token? null if so (426), else {code, message, final}. */
  static async check(url) {
    try {
      const r = await fetch(url, { cache: "no-store" });
      if (r.status === 426) return null;
      const body = await r.json().catch(() => ({}));
      const final = r.status === 401 || r.status === 400 || r.status === 403;
      return { code: body.error || "http_" + r.status, message: body.message || "", final };
    } catch {
      return { code: "unreachable", message: "", final: false };
    }
  }

  // Why was the upgrade refused? The same GET without upgrade headers says (contract item 3).
  async preflight() {
    const reason = await CommHub.check(this.signalUrl());
    if (reason && reason.final) { this.finish(reason); return "final"; }
    return reason && RETRYABLE_HTTP.has(reason.code) ? reason : { code: "unreachable", message: "" };
  }

  scheduleRetry(reason) {
    if (reason === "final" || this.state === "closed") return;
    const { base, max } = this.backoff;
    // "equal jitter": half the exponential step is fixed, half random, so clients that
    // dropped together (hub restart) do not all come back in the same instant
    const step = Math.min(max, base * 2 ** Math.min(this.attempt, 10));
    let delay = step / 2 + Math.random() * step / 2;
    if (this.hint !== null) { delay = this.hint + Math.random() * 1000; this.hint = null; }
    this.attempt += 1;
    this.setState(this.everJoined ? "reconnecting" : "connecting", { reason: reason || this.reason, retryIn: Math.round(delay), attempt: this.attempt });
    this.timers.retry = setTimeout(() => this.retryNow(), delay);
  }

  // after a drop: through the entry URL, which routes us to the room's node of the moment
  retryNow() { clearTimeout(this.timers.retry); this.node = this.http; this.redirectsInRow = 0; this.open(); }

  finish(reason) {
    if (this.state === "closed") return;
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.join);
    clearInterval(this.timers.ping);
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onclose = ws.onmessage = null; try { ws.close(1000); } catch { /* closed */ } }
    this.joinedHere = false;
    for (const item of this.outbox) if (item.status !== "delivered") Object.assign(item, { status: "failed", reason: reason.code });
    this.emit("outbox", this.outbox.slice());
    this.run(() => this.teardownMedia());
    this.setState("closed", { reason });
    if (this.firstJoin) { this.firstJoin.reject(reason); this.firstJoin = null; }
  }

  heartbeat() {
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastRx > SILENT_LIMIT) return this.dropped(4000); // half-open socket
      this.send({ type: "ping" });
    }, PING_EVERY);
  }

  send(msg) {
    if (this.debug) trace(">", msg);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(msg)); return true; }
    return false;
  }

  run(step) {
    this.chain = this.chain.then(step).catch((err) => console.warn("commhub:", err));
    return this.chain;
  }

  // -- messages --------------------------------------------------------------------------

  onMessage(msg) {
    if (this.debug) trace("<", msg);
    switch (msg.type) {
      case "joined": return this.onJoined(msg);
      case "participant_joined":
      case "participant_updated":
        this.participants.set(msg.participant.id, msg.participant);
        if (msg.participant.id === this.me?.id) this.me = msg.participant;
        return this.emit("participants", [...this.participants.values()]);
      case "participant_left":
        this.participants.delete(msg.participant.id);
        return this.emit("participants", [...this.participants.values()]);
      case "chat": this.confirm(msg); return this.emit("chat", msg);
      case "track": return this.onTrackInfo(msg);
      case "media_mode": return this.run(() => this.onMode(msg));
      case "offer": case "answer": case "ice": {
        // An offer that has arrived but waits its turn in the chain: making one of ours
        // now would only collide with it (and crossed offers can propose the same mid).
        const side = msg.from ? "direct" : "hub";
        if (msg.type === "offer") this.queuedOffers[side] += 1;
        return this.run(async () => {
          try { await (msg.from ? this.onDirect(msg) : this.onHub(msg)); } finally { if (msg.type === "offer") this.queuedOffers[side] -= 1; }
        });
      }
      case "media_closed":
        this.emit("notice", msg);
        return this.run(() => this.restartHub());
      case "caption": return this.emit("caption", msg);
      case "recording": return this.emit("recording", msg.recording);
      case "caption_unavailable": case "caption_degraded": return this.emit("notice", msg);
      case "moderated":
        // a dropped chat gets no echo: what the sender typed leaves the outbox here
        if (msg.kind === "chat" && msg.action === "drop" && msg.ref) this.confirm({ ...msg, from: this.me, text: null });
        return this.emit("moderation", msg);
      case "track_blocked": case "report_filed": case "reported": case "moderation_action":
        return this.emit("moderation", msg);
      // The hub is about to close this socket: from now on it is not "connected" (its
      // close frame would otherwise leave it half-closed for a moment, still looking open).
      case "server_shutdown":
        this.hint = Math.max(0, msg.reconnect_after * 1000);
        return this.dropped(1001);
      case "bye":
        if (FINAL_BYE.has(msg.reason)) return this.finish({ code: msg.reason, message: msg.message || "" });
        return this.dropped(1000);
      case "redirect": return this.onRedirect(msg);
      case "error": return this.onError(msg);
    }
  }

  onJoined(msg) {
    this.joinedHere = this.everJoined = true;
    this.attempt = 0;
    this.redirectsInRow = 0;
    this.me = msg.participant;
    this.room = msg.room;
    this.joined = msg;
    this.mode = msg.room.mode === "p2p" ? this.mode : msg.room.mode || "sfu";
    this.prefs.speak = this.me.speak;
    this.prefs.read = this.me.read;
    this.participants = new Map([[msg.participant.id, msg.participant], ...msg.participants.map((p) => [p.id, p])]);
    this.publications.clear();
    this.heartbeat();
    this.setState("connected", { reason: null });
    this.emit("joined", msg);
    this.emit("participants", [...this.participants.values()]);
    this.emit("history", msg.chat);
    for (const item of this.outbox) {
      if (item.status !== "sent") continue;
      const seen = msg.chat.some((c) => c.from.identity === this.me.identity && c.text === item.text && c.ts * 1000 >= item.sentAt - 2000);
      item.status = seen ? "delivered" : "queued";
    }
    this.outbox = this.outbox.filter((i) => i.status !== "delivered");
    this.flush();
    this.emit("outbox", this.outbox.slice());
    this.run(() => this.startHub());
    if (this.firstJoin) { this.firstJoin.resolve(msg); this.firstJoin = null; }
  }

  onError(msg) {
    if (msg.fatal) {
      this.emit("error", msg);
      return this.finish({ code: msg.code, message: msg.message });
    }
    const item = msg.ref && this.outbox.find((i) => i.id === msg.ref);
    if (item) { Object.assign(item, { status: "failed", reason: msg.code }); this.emit("outbox", this.outbox.slice()); }
    this.emit("error", msg);
  }

  onTrackInfo(msg) {
    const key = `${msg.participant}/${msg.track.id}`;
    if (msg.state === "unpublished") this.publications.delete(key);
    else this.publications.set(key, { participant: msg.participant, track: msg.track });
    for (const r of this.remote.values()) if (r.participant === msg.participant && r.meta.id === msg.track.id) r.meta = msg.track;
    this.emit("trackinfo", msg);
  }

  // -- chat outbox -----------------------------------------------------------------------

  flush() {
    if (!this.connected()) return;
    for (const item of this.outbox) {
      if (item.status !== "queued") continue;
      if (this.send({ type: "chat", id: item.id, text: item.text })) Object.assign(item, { status: "sent", sentAt: Date.now() });
    }
  }

  confirm(msg) {
    if (!this.me || msg.from.identity !== this.me.identity) return;
    // by the echoed ref (a masked echo's text is not what was sent), else by its text
    let i = msg.ref ? this.outbox.findIndex((x) => x.id === msg.ref) : -1;
    if (i < 0) i = this.outbox.findIndex((x) => x.status === "sent" && x.text === msg.text);
    if (i < 0) return;
    this.outbox.splice(i, 1);
    this.emit("outbox", this.outbox.slice());
  }

  requeueOutbox() {
    // sent but unconfirmed: decided at the next `joined` (its recent chat shows what arrived)
    this.emit("outbox", this.outbox.slice());
  }

  // -- local tracks ----------------------------------------------------------------------

  async setLocal(kind, track) {
    const old = this.local[kind];
    if (old && old !== track) this.stream.removeTrack(old);
    if (track) { track.enabled = !this.muted[kind]; if (!this.stream.getTracks().includes(track)) this.stream.addTrack(track); }
    this.local[kind] = track || null;
    return this.run(async () => { await this.syncHub(); await this.syncDirect(); this.announce(); });
  }

  // -- the hub connection ----------------------------------------------------------------

  async startHub() {
    if (!this.joinedHere) return;
    if (this.pc) this.closeHub();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers(), bundlePolicy: "max-bundle" });
    this.pc = pc;
    this.hubT = { audio: null, video: null, open: null };
    this.announced.clear();
    this.hubOfferId = null;
    pc.onicecandidate = (e) => { if (this.pc === pc && pc.localDescription) this.send({ type: "ice", candidate: e.candidate ? e.candidate.toJSON() : null }); };
    pc.onnegotiationneeded = () => this.run(() => this.offerHub(pc));
    pc.ontrack = () => this.run(() => this.refreshSlots(pc));
    pc.onconnectionstatechange = () => { if (this.pc === pc) this.setState(this.state); };
    await this.syncHub(); // adding the sections fires negotiationneeded: our first offer
  }

  async restartHub() {
    this.closeHub();
    if (!this.joinedHere) return;
    await this.startHub();
    this.emit("notice", { type: "media_restored" });
  }

  closeHub() {
    if (!this.pc) return;
    this.pc.onnegotiationneeded = this.pc.ontrack = this.pc.onicecandidate = this.pc.onconnectionstatechange = null;
    this.pc.close();
    this.pc = null;
    for (const [key, r] of this.remote) if (r.via === "hub") this.dropRemote(key);
    this.slots.clear();
  }

  // What we send to the hub: audio always (captions need it, p2p included), video in sfu.
  // The hub publishes a section once: after that a track is swapped or muted, never removed.
  // A track that comes later gets a section of its own (added by our offer), never a
  // direction change of an existing one: that could ride on our answer to a hub offer, and
  // the hub only takes publications from offers.
  async syncHub() {
    const pc = this.pc;
    if (!pc) return;
    const want = { audio: this.local.audio, video: this.mode === "sfu" ? this.local.video : null };
    for (const kind of ["audio", "video"]) {
      const t = this.hubT[kind];
      if (!t && want[kind]) this.hubT[kind] = pc.addTransceiver(want[kind], { direction: "sendonly", streams: [this.stream] });
      else if (t && t.sender.track !== want[kind]) await t.sender.replaceTrack(want[kind]);
    }
    // publishing nothing yet: one receive-only section opens the connection
    if (!this.hubT.audio && !this.hubT.video && !this.hubT.open) this.hubT.open = pc.addTransceiver("audio", { direction: "recvonly" });
  }

  async offerHub(pc) {
    // (skipped ones are asked for again by the browser once the connection is stable)
    if (!pc || pc !== this.pc || !this.joinedHere || pc.signalingState !== "stable" || this.queuedOffers.hub) return;
    await pc.setLocalDescription();
    this.hubOfferId = "offer-" + ++this.seq;
    this.announce(); // metadata before the offer: the hub applies it as the track appears
    this.send({ type: "offer", id: this.hubOfferId, sdp: pc.localDescription.sdp });
  }

  async onHub(msg) {
    const pc = this.pc;
    if (!pc || msg.type === "ice") return; // the hub's candidates are inside its SDP
    if (msg.type === "answer" && pc.signalingState !== "have-local-offer") return;
    // An offer of the hub's that crossed ours is dropped: the hub withdraws it, answers
    // ours, then offers again (PROTOCOL.md, Glare), so no rollback is ever needed.
    if (msg.type === "offer" && pc.signalingState === "have-local-offer") return;
    this.slots = new Map(msg.tracks.map((s) => [s.mid, s]));
    await pc.setRemoteDescription({ type: msg.type, sdp: msg.sdp });
    if (msg.type === "offer") {
      await pc.setLocalDescription();
      this.send({ type: "answer", sdp: pc.localDescription.sdp });
    }
    this.refreshSlots(pc);
  }

  // The hub reuses idle sections: a mid's publication is whatever the latest map says.
  refreshSlots(pc) {
    if (pc !== this.pc) return;
    for (const [key, r] of this.remote) {
      if (r.via !== "hub") continue;
      const s = this.slots.get(r.mid);
      if (!s || s.participant !== r.participant || s.track.id !== r.meta.id) this.dropRemote(key);
    }
    for (const t of pc.getTransceivers()) {
      const s = t.mid !== null && this.slots.get(t.mid);
      if (!s || !t.receiver.track || Object.values(this.hubT).includes(t)) continue;
      const key = "hub:" + s.track.id;
      if (!this.remote.has(key)) this.addRemote({ key, via: "hub", mid: t.mid, participant: s.participant, meta: s.track, receiver: t.receiver });
    }
  }

  // track metadata for what we send to the hub, by the track id of its SDP msid line
  announce() {
    const pc = this.pc;
    if (!pc || !pc.localDescription || !this.joinedHere) return;
    for (const kind of ["audio", "video"]) {
      const t = this.hubT[kind];
      if (!t || t.mid === null) continue;
      const id = msidTrack(pc.localDescription.sdp, t.mid);
      if (!id) continue;
      // video in p2p rooms goes to the peer, not the hub: the hub's copy is muted meanwhile
      const muted = !this.local[kind] || this.muted[kind] || (kind === "video" && this.mode !== "sfu");
      const source = kind === "audio" ? "microphone" : "camera";
      if (this.announced.get(id) === source + muted) continue;
      this.announced.set(id, source + muted);
      this.send({ type: "track", track_id: id, source, muted });
    }
  }

  iceServers() { return (this.joined ? this.joined.ice_servers : []).map((s) => ({ ...s })); }

  // -- room modes and the direct connection ----------------------------------------------

  async onMode(msg) {
    if (msg.mode === "p2p" && !msg.peer) return; // incomplete; the full one follows
    this.mode = msg.mode;
    if (msg.mode === "p2p") {
      if (!this.direct || this.peer !== msg.peer) this.openDirect(msg.peer, msg.offerer);
    } else {
      this.closeDirect();
    }
    await this.syncHub();
    this.announce();
    await this.syncDirect();
    this.emit("mode", msg);
    this.setState(this.state);
  }

  openDirect(peer, offerer) {
    this.closeDirect();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    this.direct = pc;
    this.peer = peer;
    this.polite = !offerer;
    pc.onicecandidate = (e) => { if (this.direct === pc) this.send({ type: "ice", to: peer, candidate: e.candidate ? e.candidate.toJSON() : null }); };
    pc.onnegotiationneeded = () => this.run(() => this.offerDirect(pc));
    pc.ontrack = (e) => this.run(() => this.directTrack(pc, e));
    pc.onconnectionstatechange = () => {
      if (this.direct !== pc) return;
      if (pc.connectionState === "failed" && !this.polite) pc.restartIce();
      this.setState(this.state);
    };
    if (offerer) { // the offerer lays out the sections: one audio, one video
      for (const kind of ["audio", "video"]) {
        const t = this.local[kind];
        pc.addTransceiver(t || kind, { direction: t ? "sendrecv" : "recvonly", streams: [this.stream] });
      }
    }
  }

  closeDirect() {
    if (!this.direct) return;
    const pc = this.direct;
    pc.onnegotiationneeded = pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = null;
    pc.close();
    this.direct = this.peer = null;
    for (const [key, r] of this.remote) if (r.via === "direct") this.dropRemote(key);
  }

  // Our camera and microphone on the direct sections: a missing track is a recvonly section,
  // so the peer's track mutes (and unmutes when it comes back) by negotiation.
  async syncDirect() {
    const pc = this.direct;
    if (!pc) return;
    for (const kind of ["audio", "video"]) {
      const t = pc.getTransceivers().find((x) => !x.stopped && x.receiver.track.kind === kind);
      if (!t) continue;
      const want = this.local[kind];
      if (t.sender.track !== want) await t.sender.replaceTrack(want);
      if (want && t.sender.setStreams) t.sender.setStreams(this.stream);
      const dir = want ? "sendrecv" : "recvonly";
      if (t.direction !== dir) t.direction = dir;
    }
  }

  async offerDirect(pc) {
    if (pc !== this.direct || pc.signalingState !== "stable" || this.queuedOffers.direct) return;
    await pc.setLocalDescription();
    this.send({ type: "offer", to: this.peer, sdp: pc.localDescription.sdp });
  }

  async onDirect(msg) {
    if (msg.type === "offer" && !this.direct && this.mode === "p2p" && msg.from === this.peer) this.openDirect(msg.from, false);
    const pc = this.direct;
    if (!pc || msg.from !== this.peer) return;
    if (msg.type === "ice") {
      try { await pc.addIceCandidate(msg.candidate || null); } catch (err) { if (!this.ignoring) console.warn("commhub: candidate", err); }
      return;
    }
    const collision = msg.type === "offer" && pc.signalingState !== "stable";
    this.ignoring = !this.polite && collision; // the impolite side keeps its own offer
    if (this.ignoring) return;
    if (msg.type === "answer" && pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: msg.type, sdp: msg.sdp });
    if (msg.type === "offer") {
      await this.syncDirect();
      await pc.setLocalDescription();
      this.send({ type: "answer", to: this.peer, sdp: pc.localDescription.sdp });
    }
  }

  directTrack(pc, e) {
    if (pc !== this.direct) return;
    const kind = e.track.kind;
    const key = "direct:" + e.transceiver.mid;
    if (this.remote.has(key)) return;
    const meta = { id: e.track.id, kind, source: kind === "audio" ? "microphone" : "camera", muted: e.track.muted };
    const entry = this.addRemote({ key, via: "direct", mid: e.transceiver.mid, participant: this.peer, meta, receiver: e.receiver });
    // the peer's section stops or resumes sending: its track mutes / unmutes
    e.track.onmute = e.track.onunmute = () => { entry.meta = { ...entry.meta, muted: e.track.muted }; this.emit("trackinfo", { state: "updated", participant: entry.participant, track: entry.meta, direct: true }); };
  }

  addRemote(r) {
    const track = r.receiver.track;
    const entry = { ...r, kind: track.kind, track, stream: new MediaStream([track]) };
    this.remote.set(r.key, entry);
    this.emit("track", entry);
    return entry;
  }

  dropRemote(key) {
    const r = this.remote.get(key);
    if (!r) return;
    this.remote.delete(key);
    this.emit("trackended", r);
  }

  teardownMedia() {
    this.closeDirect();
    this.closeHub();
    this.mode = "sfu";
  }
}

function trace(dir, msg) {
  const mids = msg.sdp ? " mids=" + [...msg.sdp.matchAll(/a=mid:(\S+)/g)].map((m) => m[1]).join(",") + " dirs=" + [...msg.sdp.matchAll(/a=(sendonly|recvonly|sendrecv|inactive)/g)].map((m) => m[1][0]).join("") : "";
  if (msg.type !== "ice" && msg.type !== "ping" && msg.type !== "pong") console.debug(`commhub ${dir} ${msg.type}${msg.id ? " " + msg.id : ""}${msg.ref ? " ref=" + msg.ref : ""}${msg.code ? " " + msg.code : ""}${mids}`);
}

/** The track id of a section's `a=msid:<stream> <track>` line (what the hub names it by). */
export function msidTrack(sdp, mid) {
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    if (!new RegExp(`\\r?\\na=mid:${mid.replace(/[^\w-]/g, "\\$&")}\\r?(\\n|$)`).test(section)) continue;
    const m = section.match(/\na=msid:\S+ (\S+)/);
    return m ? m[1] : null;
  }
  return null;
}
