// commhub.js: an embeddable browser client for a commhub room.
// One RTCPeerConnection with the hub (what we publish + what the hub relays to us),
// a direct one to the other party when the hub puts the room in p2p mode.
// Events (CommHub is an EventTarget): state, joined, participants, chat, track, trackended,
// mode, error, message (every server message), caption (partial and final captions, with a
// translation when the hub made one), notice (caption_unavailable / caption_degraded).
export class CommHub extends EventTarget {
  constructor({ url = location.origin, token, name, p2p = true } = {}) {
    super();
    this.base = url.replace(/^http/, "ws").replace(/\/$/, "");
    this.token = token;
    this.name = name;
    this.p2p = p2p;
    this.participants = new Map(); // id -> participant
    this.tracks = new Map(); // track id -> {participant, track meta}
    this.slots = new Map(); // hub mid -> track_slot
    this.remote = new Map(); // key -> {participant, meta, track, stream}
    this.local = []; // {track, source}
    this.mode = "sfu";
    this.pc = null;
    this.direct = null;
    this.peer = null;
    this.makingOffer = false;
    this.pendingOffer = false;
    this.seq = 0;
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  state() {
    return {
      signal: this.ws ? ["connecting", "open", "closing", "closed"][this.ws.readyState] : "idle",
      media: this.pc ? this.pc.connectionState : "none",
      direct: this.direct ? this.direct.connectionState : "none",
      mode: this.mode,
    };
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${this.base}/v1/signal?access_token=${encodeURIComponent(this.token)}`);
      this.ws = ws;
      ws.onopen = () => {
        const join = { type: "join", capabilities: { p2p: this.p2p } };
        if (this.name) join.name = this.name;
        this.send(join);
        this.emit("state", this.state());
      };
      ws.onclose = (e) => { this.emit("state", { ...this.state(), code: e.code }); reject(e); };
      ws.onmessage = async (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === "joined") resolve(msg);
        try { await this.handle(msg); } catch (err) { console.error("commhub", msg.type, err); }
        this.emit("message", msg);
      };
    });
  }

  send(msg) { this.ws.send(JSON.stringify(msg)); }

  chat(text) { this.send({ type: "chat", text }); }

  leave() {
    if (this.ws && this.ws.readyState === 1) this.send({ type: "leave" });
    this.closeMedia();
  }

  closeMedia() {
    for (const pc of [this.pc, this.direct]) if (pc) pc.close();
    this.pc = this.direct = null;
  }

  // -- publishing ------------------------------------------------------------------------
  async publish(stream, sources = {}) {
    for (const track of stream.getTracks()) {
      const source = sources[track.kind] || (track.kind === "audio" ? "microphone" : "camera");
      this.local.push({ track, source });
      this.send({ type: "track", track_id: track.id, source });
      this.hubPc().addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    await this.negotiate();
  }

  async receiveOnly() {
    this.hubPc().addTransceiver("audio", { direction: "recvonly" });
    await this.negotiate();
  }

  setLanguage({ speak, read }) {
    const msg = { type: "set_language" };
    if (speak) msg.speak = speak;
    if (read) msg.read = read;
    this.send(msg);
  }

  setMuted(track, muted) {
    track.enabled = !muted;
    this.send({ type: "track", track_id: track.id, muted });
  }

  hubPc() {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers(), bundlePolicy: "max-bundle" });
    this.pc = pc;
    pc.onicecandidate = (e) => this.send({ type: "ice", candidate: e.candidate ? e.candidate.toJSON() : null });
    pc.onconnectionstatechange = () => this.emit("state", this.state());
    pc.ontrack = (e) => this.onHubTrack(e);
    return pc;
  }

  iceServers() {
    return (this.joined ? this.joined.ice_servers : []).map((s) => ({ ...s }));
  }

  async negotiate() {
    const pc = this.hubPc();
    if (this.makingOffer || pc.signalingState !== "stable") { this.pendingOffer = true; return; }
    this.makingOffer = true;
    try {
      await pc.setLocalDescription();
      this.send({ type: "offer", id: "offer-" + ++this.seq, sdp: pc.localDescription.sdp });
    } catch (err) {
      this.makingOffer = false;
      throw err;
    }
  }

  // -- inbound ---------------------------------------------------------------------------
  async handle(msg) {
    switch (msg.type) {
      case "joined":
        this.joined = msg;
        this.me = msg.participant;
        this.participants.set(msg.participant.id, msg.participant);
        for (const p of msg.participants) this.participants.set(p.id, p);
        this.emit("joined", msg);
        this.emit("participants", [...this.participants.values()]);
        break;
      case "participant_joined":
      case "participant_updated":
        this.participants.set(msg.participant.id, msg.participant);
        this.emit("participants", [...this.participants.values()]);
        break;
      case "participant_left":
        this.participants.delete(msg.participant.id);
        this.emit("participants", [...this.participants.values()]);
        break;
      case "chat":
        this.emit("chat", msg);
        break;
      case "track":
        if (msg.state === "unpublished") this.tracks.delete(msg.track.id);
        else this.tracks.set(msg.track.id, { participant: msg.participant, track: msg.track });
        for (const r of this.remote.values()) if (r.meta.id === msg.track.id) r.meta = msg.track;
        this.emit("trackinfo", msg);
        break;
      case "media_mode":
        await this.onMode(msg);
        break;
      case "offer":
      case "answer":
      case "ice":
        if (msg.from) await this.onDirect(msg);
        else await this.onHub(msg);
        break;
      case "media_closed":
        this.closeHub();
        break;
      case "error":
        if (msg.code === "wrong_state" && (msg.ref || "").startsWith("offer-")) {
          this.makingOffer = false; // the hub's offer won: answer it, then offer again
          this.pendingOffer = true;
        }
        this.emit("error", msg);
        break;
      case "caption":
        this.emit("caption", msg);
        break;
      case "caption_unavailable":
      case "caption_degraded":
        this.emit("notice", msg);
        break;
    }
  }

  closeHub() {
    if (this.pc) this.pc.close();
    this.pc = null;
    for (const [key, r] of this.remote) if (!key.startsWith("p2p:")) this.dropRemote(key, r);
    this.emit("state", this.state());
  }

  async onHub(msg) {
    const pc = this.hubPc();
    if (msg.type === "ice") return; // the hub's candidates are in its SDP
    for (const s of msg.tracks) this.slots.set(s.mid, s);
    if (msg.type === "offer") {
      // polite peer: an offer of ours in flight is rolled back (the hub refuses it)
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await pc.setLocalDescription();
      this.send({ type: "answer", sdp: pc.localDescription.sdp });
    } else {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      this.makingOffer = false;
    }
    this.refreshSlots(msg.tracks);
    if (this.pendingOffer && pc.signalingState === "stable") {
      this.pendingOffer = false;
      await this.negotiate();
    }
  }

  refreshSlots(tracks) {
    const live = new Set(tracks.map((s) => s.mid));
    for (const [key, r] of this.remote) if (!key.startsWith("p2p:") && !live.has(key)) this.dropRemote(key, r);
    for (const t of this.pc.getTransceivers()) {
      const slot = this.slots.get(t.mid);
      if (slot && live.has(t.mid) && !this.remote.has(t.mid)) this.addRemote(t.mid, slot.participant, slot.track, t.receiver.track);
    }
  }

  onHubTrack(e) {
    const mid = e.transceiver.mid;
    const slot = this.slots.get(mid);
    if (slot && !this.remote.has(mid)) this.addRemote(mid, slot.participant, slot.track, e.track);
  }

  addRemote(key, participant, meta, track) {
    const r = { key, participant, meta, track, stream: new MediaStream([track]) };
    this.remote.set(key, r);
    this.emit("track", r);
  }

  dropRemote(key, r) {
    this.remote.delete(key);
    this.emit("trackended", r);
  }

  // -- p2p -------------------------------------------------------------------------------
  async onMode(msg) {
    this.mode = msg.mode;
    this.peer = msg.peer || null;
    if (msg.mode === "sfu" && this.direct) {
      this.direct.close();
      this.direct = null;
      for (const [key, r] of this.remote) if (key.startsWith("p2p:")) this.dropRemote(key, r);
    }
    if (msg.mode === "p2p" && msg.offerer) {
      const pc = this.directPc();
      for (const kind of ["audio", "video"]) {
        const mine = this.local.find((l) => l.track.kind === kind);
        pc.addTransceiver(mine ? mine.track : kind, { direction: mine ? "sendrecv" : "recvonly" });
      }
      await pc.setLocalDescription();
      this.send({ type: "offer", to: this.peer, sdp: pc.localDescription.sdp });
    }
    this.emit("mode", msg);
    this.emit("state", this.state());
  }

  directPc() {
    if (this.direct) this.direct.close();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    this.direct = pc;
    pc.onicecandidate = (e) => {
      if (this.peer) this.send({ type: "ice", to: this.peer, candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.onconnectionstatechange = () => this.emit("state", this.state());
    pc.ontrack = (e) => {
      const meta = { id: e.track.id, kind: e.track.kind, source: e.track.kind === "audio" ? "microphone" : "camera", muted: false };
      this.addRemote("p2p:" + e.transceiver.mid, this.peer, meta, e.track);
    };
    return pc;
  }

  async onDirect(msg) {
    if (msg.type === "offer") {
      const pc = this.directPc();
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      const used = new Set();
      for (const t of pc.getTransceivers()) {
        const mine = this.local.find((l) => l.track.kind === t.receiver.track.kind && !used.has(l.track));
        if (mine) { used.add(mine.track); await t.sender.replaceTrack(mine.track); t.direction = "sendrecv"; }
      }
      await pc.setLocalDescription();
      this.send({ type: "answer", to: msg.from, sdp: pc.localDescription.sdp });
    } else if (msg.type === "answer" && this.direct) {
      await this.direct.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } else if (msg.type === "ice" && this.direct && msg.candidate) {
      await this.direct.addIceCandidate(msg.candidate);
    }
  }
}
