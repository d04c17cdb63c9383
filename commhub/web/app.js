// The call page: a join link (/join/<code> or /?invite=) or an access token (/?token= or
// pasted) -> pre-join (name, languages, devices with a preview) -> the call.
import { CommHub } from "/static/commhub.js";
import { base, browserLang, fillLangs, langs, loadLanguages, readNote, shortName, speakNote } from "/static/languages.js";
import { pickLanguage, translator } from "/static/strings.js";

const UI = pickLanguage();
const t = translator(UI);
const $ = (id) => document.getElementById(id);
function el(tag, props = {}, ...kids) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...kids.filter((k) => k !== null && k !== undefined && k !== false));
  return node;
}

const params = new URLSearchParams(location.search);
const flag = (k, dflt) => (params.has(k) ? params.get(k) !== "0" && params.get(k) !== "off" : dflt);
// Browser voice processing (echo cancellation...) stays on; tests turn it off for fidelity.
const PROCESSING = flag("processing", true);
const AUDIO = { echoCancellation: PROCESSING, noiseSuppression: PROCESSING, autoGainControl: PROCESSING };
const VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
const SESSION_KEY = "commhub.session";
// Inside another page (a desk's visitor page or agent console): no top bar of our own, the
// state and the end of the call go to that page, and nothing is kept for a reload.
const EMBED = flag("embed", false) && window.parent !== window;
function toParent(kind, detail = {}) {
  if (EMBED) window.parent.postMessage({ source: "commhub-call", kind, ...detail }, location.origin);
}

const app = {
  hub: null, token: null, invite: null, claims: {}, room: "",
  pre: { mic: flag("mic", true), cam: flag("cam", flag("video", true)), micId: "", camId: "", stream: null },
  local: { audio: null, video: null }, micMuted: false,
  tiles: new Map(), // participant id ("me" for us) -> tile
  lostAudio: new Set(), // participants whose audio publication ended while they stayed
  items: [], // chat and final captions shown, for re-showing in another language
  segments: new Map(), // caption segment -> line on the bar
  history: [], // final captions: {at, name, text, orig}
  shownNotices: new Set(),
  reportFor: null, // the participant whose report form is open (People tab)
  startedAt: 0, showOriginal: true, captionsOn: true, meter: null,
};
window.commhubApp = app; // for tests and debugging

// -- words ----------------------------------------------------------------------------------

function applyStrings(root = document) {
  document.documentElement.lang = UI;
  $("chat-log").dataset.empty = t("chat.none");
  $("caption-log").dataset.empty = t("captions.none");
  for (const n of root.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
  for (const n of root.querySelectorAll("[data-i18n-label]")) n.setAttribute("aria-label", t(n.dataset.i18nLabel));
  for (const n of root.querySelectorAll("[data-i18n-placeholder]")) n.placeholder = t(n.dataset.i18nPlaceholder);
}

function reasonText(reason) {
  if (!reason) return "";
  const key = "reason." + reason.code;
  const s = t(key);
  return s === key ? t("reason.unknown", { code: reason.code }) : s;
}

// -- screens --------------------------------------------------------------------------------

function show(screen) {
  document.body.dataset.screen = screen;
  for (const id of ["landing", "prejoin", "call", "ended"]) $(id).hidden = id !== screen;
}

function setRoom(name) {
  app.room = name || "";
  $("room-name").textContent = app.room;
  $("pre-room").textContent = app.room;
  document.title = app.room ? `${app.room} · commhub` : "commhub";
}

function showError(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch { return {}; }
}

async function boot() {
  applyStrings();
  document.body.classList.toggle("embed", EMBED);
  if (EMBED) document.body.dataset.connecting = t("state.connecting"); // shown over the pre-join while it joins by itself
  // a token in the fragment never reaches the server (nor its logs)
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    history.replaceState(null, "", location.pathname + location.search);
    return useToken(fromHash);
  }
  const m = location.pathname.match(/^\/join\/([^/?#]+)/);
  app.invite = m ? decodeURIComponent(m[1]) : params.get("invite");
  const fromUrl = params.get("token");
  if (fromUrl) {
    params.delete("token"); // the token leaves the address bar at once; it lives in this tab only
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "") + location.hash);
    return useToken(fromUrl);
  }
  if (app.invite) return openInvite(app.invite);
  const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  if (saved && saved.token) return useToken(saved.token, saved);
  show("landing");
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  if (token) useToken(token);
});

async function useToken(token, saved = null) {
  app.token = token;
  app.invite = null;
  app.claims = decodeClaims(token);
  setRoom(app.claims.room && app.claims.room !== "*" ? app.claims.room : params.get("room") || "");
  // a token the hub refuses is said so now, in words, before asking for camera or name
  const room = params.get("room") ? `&room=${encodeURIComponent(params.get("room"))}` : "";
  const refused = await CommHub.check(`${location.origin}/v1/signal?access_token=${encodeURIComponent(token)}${room}`);
  if (refused && refused.final) {
    app.token = null;
    sessionStorage.removeItem(SESSION_KEY);
    show("landing");
    showError("landing-error", reasonText(refused));
    $("token-input").focus();
    return;
  }
  const lang = app.claims.lang || {};
  await prejoin({ name: saved?.name || params.get("name") || app.claims.name || "", speak: saved?.speak || lang.speak, read: saved?.read || lang.read });
}

async function openInvite(code) {
  show("prejoin");
  let info = null;
  try {
    const r = await fetch(`/v1/invites/${encodeURIComponent(code)}`, { cache: "no-store" });
    info = await r.json().catch(() => ({}));
    if (!r.ok) {
      showError("prejoin-error", reasonText({ code: info.error || "http_" + r.status }));
      $("join-button").disabled = true;
      return prejoin({}, false);
    }
  } catch {
    showError("prejoin-error", reasonText({ code: "unreachable" }));
  }
  if (info) {
    setRoom(info.room);
    if (info.expires_at) {
      const when = new Intl.DateTimeFormat(UI, { dateStyle: "medium", timeStyle: "short" }).format(new Date(info.expires_at * 1000));
      $("pre-expires").textContent = t("prejoin.expires", { when });
      $("pre-expires").hidden = false;
    }
  }
  await prejoin({});
}

// -- pre-join -------------------------------------------------------------------------------

function refreshLangNotes() {
  const speak = $("speak-select").value;
  fillLangs($("read-select"), $("read-select").value, (c) => readNote(c, [speak]));
  const s = $("speak-select").selectedOptions[0], r = $("read-select").selectedOptions[0];
  $("lang-note").textContent = [s?.dataset.missing && `${shortName(speak)}: ${s.dataset.missing}`, r?.dataset.missing && `${shortName(r.value)}: ${r.dataset.missing}`].filter(Boolean).join(" · ") || (langs.unknown ? t("lang.unknown") : "");
}

async function prejoin({ name = "", speak, read }, enabled = true) {
  show("prejoin");
  await loadLanguages();
  const mine = browserLang();
  $("name-input").value = name || $("name-input").value;
  fillLangs($("speak-select"), speak || mine, speakNote);
  fillLangs($("read-select"), read || speak || mine, () => "");
  refreshLangNotes();
  setToggle($("pre-mic"), app.pre.mic);
  setToggle($("pre-cam"), app.pre.cam);
  if (!enabled) return;
  $("join-button").disabled = false;
  await startPreview();
  if (flag("autojoin", false) && !app.autojoined) { app.autojoined = true; $("prejoin-form").requestSubmit(); }
  else if (!$("name-input").value) $("name-input").focus();
  else $("join-button").focus();
}

$("speak-select").addEventListener("change", refreshLangNotes);
$("read-select").addEventListener("change", refreshLangNotes);

function setToggle(button, on) {
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("off", !on);
}

$("pre-mic").addEventListener("click", () => { app.pre.mic = !app.pre.mic; setToggle($("pre-mic"), app.pre.mic); startPreview(); });
$("pre-cam").addEventListener("click", () => { app.pre.cam = !app.pre.cam; setToggle($("pre-cam"), app.pre.cam); startPreview(); });
$("mic-select").addEventListener("change", (e) => { app.pre.micId = e.target.value; startPreview(); });
$("cam-select").addEventListener("change", (e) => { app.pre.camId = e.target.value; startPreview(); });
// label the round toggles by what pressing them does
for (const [id, key] of [["pre-mic", "prejoin.microphone"], ["pre-cam", "prejoin.camera"]]) $(id).setAttribute("aria-label", t(key));

function stopStream(stream) { if (stream) for (const tr of stream.getTracks()) tr.stop(); }

function audioConstraints(id) { return { ...AUDIO, ...(id && { deviceId: { exact: id } }) }; }
function videoConstraints(id) { return { ...VIDEO, ...(id && { deviceId: { exact: id } }) }; }

async function startPreview() {
  stopStream(app.pre.stream);
  app.pre.stream = null;
  const want = { audio: app.pre.mic && audioConstraints(app.pre.micId), video: app.pre.cam && videoConstraints(app.pre.camId) };
  let stream = null;
  if (want.audio || want.video) {
    try {
      stream = await navigator.mediaDevices.getUserMedia(want);
      $("devices-note").hidden = true;
    } catch {
      $("devices-note").hidden = false;
    }
  }
  app.pre.stream = stream;
  $("preview").srcObject = stream && stream.getVideoTracks().length ? stream : null;
  $("preview-off").hidden = !!(stream && stream.getVideoTracks().length);
  $("preview-off").textContent = initials($("name-input").value || "?");
  meterOn(stream && stream.getAudioTracks()[0], (v) => { $("mic-level").value = v; });
  await listDevices();
}

$("name-input").addEventListener("input", () => { $("preview-off").textContent = initials($("name-input").value || "?"); });

async function listDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { /* none */ }
  for (const [kind, ids, cur] of [["audioinput", ["mic-select", "mic-select-call"], currentId("audio")], ["videoinput", ["cam-select", "cam-select-call"], currentId("video")]]) {
    const list = devices.filter((d) => d.kind === kind && d.deviceId);
    for (const id of ids) {
      const s = $(id);
      s.replaceChildren(...(list.length ? list.map((d, i) => el("option", { value: d.deviceId, textContent: d.label || `${t(kind === "audioinput" ? "prejoin.microphone" : "prejoin.camera")} ${i + 1}` })) : [el("option", { value: "", textContent: t("prejoin.nodevice") })]));
      if (cur && list.some((d) => d.deviceId === cur)) s.value = cur;
    }
  }
}

function currentId(kind) {
  const track = app.local[kind] || (app.pre.stream && app.pre.stream.getTracks().find((x) => x.kind === kind));
  return track ? track.getSettings().deviceId : kind === "audio" ? app.pre.micId : app.pre.camId;
}
navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);

// A level meter on a local track (pre-join preview, and our own tile in the call).
let audioCtx = null;
function meterOn(track, onLevel) {
  if (app.meter) { app.meter.stop(); app.meter = null; }
  if (!track) { onLevel(0); return; }
  audioCtx = audioCtx || new AudioContext();
  if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
  const src = audioCtx.createMediaStreamSource(new MediaStream([track]));
  const an = audioCtx.createAnalyser();
  an.fftSize = 512;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  let alive = true;
  const m = { level: 0, stop() { alive = false; src.disconnect(); } };
  const tick = () => {
    if (!alive) return;
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    m.level = track.enabled ? Math.min(1, Math.sqrt(sum / buf.length) * 4) : 0;
    onLevel(m.level);
    setTimeout(tick, 100);
  };
  tick();
  app.meter = m;
}
document.addEventListener("pointerdown", () => audioCtx && audioCtx.state === "suspended" && audioCtx.resume(), { capture: true });
document.addEventListener("keydown", () => audioCtx && audioCtx.state === "suspended" && audioCtx.resume(), { capture: true });

$("prejoin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("name-input").value.trim();
  if (!name) { $("name-input").focus(); return; }
  const speak = $("speak-select").value, read = $("read-select").value;
  $("join-button").disabled = true;
  $("join-button").textContent = t("prejoin.joining");
  showError("prejoin-error", "");
  try {
    if (app.invite) {
      const r = await fetch(`/v1/invites/${encodeURIComponent(app.invite)}/redeem`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name, speak, read }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw { code: body.error || "http_" + r.status, message: body.message };
      app.token = body.token;
      app.invite = null;
      setRoom(body.room);
      history.replaceState(null, "", "/"); // the link was used: it leaves the address bar
    }
    await enterCall({ name, speak, read });
  } catch (reason) {
    showError("prejoin-error", reasonText(reason.code ? reason : { code: "unreachable" }));
  } finally {
    $("join-button").disabled = false;
    $("join-button").textContent = t("prejoin.join");
  }
});

// -- the call -------------------------------------------------------------------------------

async function enterCall({ name, speak, read }) {
  if (!EMBED) sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token: app.token, name, speak, read }));
  const hub = new CommHub({ token: app.token, room: params.get("room") || undefined, name, speak, read, debug: flag("debug", false) });
  app.hub = window.commhub = hub;
  hub.addEventListener("state", (e) => onState(e.detail));
  hub.addEventListener("joined", (e) => onJoined(e.detail));
  hub.addEventListener("participants", () => renderPeople());
  hub.addEventListener("history", (e) => { for (const m of e.detail) addChat(m); });
  hub.addEventListener("chat", (e) => addChat(e.detail));
  hub.addEventListener("outbox", (e) => renderOutbox(e.detail));
  hub.addEventListener("track", (e) => onTrack(e.detail));
  hub.addEventListener("trackended", (e) => onTrackEnded(e.detail));
  hub.addEventListener("trackinfo", (e) => onTrackInfo(e.detail));
  hub.addEventListener("caption", (e) => onCaption(e.detail));
  hub.addEventListener("recording", (e) => setRecording(e.detail));
  hub.addEventListener("notice", (e) => onNotice(e.detail));
  hub.addEventListener("moderation", (e) => onModeration(e.detail));
  hub.addEventListener("error", (e) => { console.warn("commhub error", e.detail); onHubError(e.detail); });
  // what the preview opened is what we publish: no second permission prompt
  const stream = app.pre.stream;
  app.pre.stream = null;
  app.local.audio = stream?.getAudioTracks()[0] || null;
  app.local.video = stream?.getVideoTracks()[0] || null;
  watchLocal(app.local.audio);
  watchLocal(app.local.video);
  app.micMuted = false;
  await hub.setMicrophone(app.local.audio);
  await hub.setCamera(app.local.video);
  app.startedAt = Date.now();
  show("call");
  ensureTile("me");
  updateLocalTile();
  updateControls();
  try {
    await hub.join();
  } catch (reason) {
    return ended(reason);
  }
  // the call's first control; not the chat box (on a phone it would open the keyboard)
  $("btn-mic").focus({ preventScroll: true });
}

function setRecording(on) {
  $("recording").hidden = !on;
  toParent("recording", { on: !!on }); // embedded, our top bar is hidden: the page around says it
}

function onJoined(msg) {
  setRoom(msg.room.name);
  setRecording(msg.recording);
  const me = msg.participant;
  fillLangs($("speak-select-call"), me.speak, speakNote);
  refreshCallReadList();
  renderPeople();
}

function onState(s) {
  document.body.dataset.state = s.state;
  document.body.dataset.media = s.media;
  toParent("state", { state: s.state, media: s.media, direct: s.direct, reason: s.reason || null });
  $("conn").dataset.state = s.state;
  let text = t("state." + s.state);
  if (s.state === "reconnecting" && s.retryIn) text = t("state.reconnecting_in", { s: Math.max(1, Math.round(s.retryIn / 1000)) });
  if ((s.state === "reconnecting" || s.state === "connecting") && s.reason && s.reason.code !== "disconnected") text += " " + reasonText(s.reason);
  if (s.state === "connected" && s.media !== "connected" && s.direct !== "connected" && (app.local.audio || app.hub?.remote.size)) text += " · " + t("media.connecting");
  $("conn-text").textContent = text;
  const ok = s.state === "connected";
  $("chat-input").disabled = !ok;
  $("chat-send").disabled = !ok;
  $("chat-paused").hidden = ok || s.state === "closed";
  for (const tile of app.tiles.values()) tile.el.classList.toggle("stale", !ok && tile.pid !== "me");
  if (s.state === "closed" && document.body.dataset.screen === "call") ended(s.reason);
}

function ended(reason) {
  const hub = app.hub;
  if (hub && app.endedHub === hub) return; // the closed state and join() both say so
  app.endedHub = hub;
  toParent("ended", { reason: reason || null });
  if (hub && hub.state !== "closed") hub.leave();
  stopLocal();
  clearRoomView();
  if (reason && String(reason.code).startsWith("token_")) {
    sessionStorage.removeItem(SESSION_KEY);
    show("landing");
    showError("landing-error", reasonText(reason));
    $("token-input").focus();
    return;
  }
  if (reason && reason.code === "room_full") {
    prejoin({ name: $("name-input").value, speak: $("speak-select").value, read: $("read-select").value });
    showError("prejoin-error", reasonText(reason));
    return;
  }
  $("ended-title").textContent = reason && reason.code === "left" ? t("ended.title") : t("ended.closed");
  $("ended-reason").textContent = reason && reason.code !== "left" ? reasonText(reason) : "";
  show("ended");
  $("rejoin").focus();
}

$("rejoin").addEventListener("click", () => {
  const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  if (app.token) useToken(app.token, saved);
  else location.reload();
});

function stopLocal() {
  for (const kind of ["audio", "video"]) { if (app.local[kind]) app.local[kind].stop(); app.local[kind] = null; }
  stopStream(app.pre.stream);
  app.pre.stream = null;
  if (app.meter) { app.meter.stop(); app.meter = null; }
}

function clearRoomView() {
  setRecording(false);
  for (const tile of app.tiles.values()) tile.el.remove();
  app.tiles.clear();
  $("audio-sink").replaceChildren();
  $("chat-log").replaceChildren();
  $("caption-log").replaceChildren();
  $("caption-bar").replaceChildren();
  $("caption-bar").hidden = true;
  $("notices").replaceChildren();
  $("people").replaceChildren();
  $("sr-captions").replaceChildren();
  app.items = []; app.history = []; app.segments.clear(); app.shownNotices.clear(); app.lostAudio.clear();
  setRoom(app.room);
  $("conn").dataset.state = "idle";
  $("conn-text").textContent = t("state.closed");
  document.body.dataset.state = "closed";
}

// embedded, the page around the call decides what leaving means (a desk session ends)
$("btn-leave").addEventListener("click", () => (EMBED ? toParent("leave") : ended({ code: "left" })));

// -- tiles: one per person; audio plays unseen, shown as mute / speaking ----------------------

function initials(name) {
  return String(name).trim().split(/\s+/).slice(0, 2).map((w) => [...w][0] || "").join("").toUpperCase() || "?";
}

function person(pid) {
  if (pid === "me") return app.hub?.me || { name: $("name-input").value };
  return app.hub?.participants.get(pid);
}

function ensureTile(pid) {
  let tile = app.tiles.get(pid);
  if (tile) return tile;
  const video = el("video", { autoplay: true, playsInline: true, muted: true });
  const avatar = el("div", { className: "avatar", ariaHidden: "true" });
  const name = el("span", { className: "name" });
  const mic = el("span", { className: "mic-state" });
  const note = el("span", { className: "tile-note" });
  const node = el("figure", { className: "tile" + (pid === "me" ? " me" : "") }, video, avatar, el("figcaption", {}, mic, name), note);
  node.dataset.pid = pid;
  tile = { pid, el: node, video, avatar, name, mic, note, audio: new Map(), videos: new Map(), lastFrame: 0, level: 0 };
  const frames = () => { tile.lastFrame = performance.now(); video.requestVideoFrameCallback(frames); };
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(frames);
  app.tiles.set(pid, tile);
  if (pid === "me") $("tiles").append(node); else $("tiles").insertBefore(node, app.tiles.get("me")?.el || null);
  layoutTiles();
  refreshTile(tile);
  return tile;
}

function layoutTiles() {
  $("tiles").dataset.count = String(app.tiles.size);
  $("tiles").classList.toggle("alone", app.tiles.size === 1 && app.tiles.has("me"));
  $("tiles").dataset.waiting = t("call.waiting");
}

function refreshTile(tile) {
  const p = person(tile.pid);
  const name = tile.pid === "me" ? `${p?.name || ""} (${t("you")})` : p?.name || "";
  tile.name.textContent = name;
  tile.avatar.textContent = initials(p?.name || "?");
  const state = micState(tile.pid);
  tile.mic.dataset.state = state;
  tile.mic.textContent = state === "muted" || state === "none" ? t("call.muted") : "";
  tile.el.setAttribute("aria-label", [name, state !== "on" ? t("call.muted") : "", tile.el.classList.contains("speaking") ? t("call.speaking") : ""].filter(Boolean).join(", "));
  tile.note.textContent = app.lostAudio.has(tile.pid) ? t("call.no_audio", { name: p?.name || "" }) : "";
}

function micState(pid) {
  if (pid === "me") return !app.local.audio ? "none" : app.micMuted ? "muted" : "on";
  const pubs = [...(app.hub?.publications.values() || [])].filter((x) => x.participant === pid && x.track.kind === "audio");
  if (!pubs.length) return [...(app.hub?.remote.values() || [])].some((r) => r.participant === pid && r.kind === "audio") ? "on" : "none";
  return pubs.every((x) => x.track.muted) ? "muted" : "on";
}

function renderPeople() {
  const hub = app.hub;
  if (!hub || !hub.me) return;
  const ids = new Set([...hub.participants.keys()].filter((id) => id !== hub.me.id));
  for (const [pid, tile] of app.tiles) {
    if (pid !== "me" && !ids.has(pid)) { tile.el.remove(); app.tiles.delete(pid); app.lostAudio.delete(pid); }
  }
  for (const id of ids) ensureTile(id);
  layoutTiles();
  for (const tile of app.tiles.values()) refreshTile(tile);
  $("people-count").textContent = `(${hub.participants.size})`;
  $("people").replaceChildren(...[...hub.participants.values()].map((p) => el("li", {},
    el("strong", { textContent: p.name + (p.id === hub.me.id ? ` (${t("you")})` : "") }),
    el("span", { className: "muted-text", textContent: t("people.langs", { speak: shortName(p.speak), read: shortName(p.read) }) }),
    p.id === hub.me.id ? null : reportControl(p))));
  refreshCallReadList();
}

// -- reports: "Report" on another participant, a reason, then the hub's acknowledgement -------

const REPORT_REASONS = ["harassment", "hate", "sexual", "violence", "spam", "self_harm", "impersonation", "other"];

function reportControl(p) {
  const open = app.reportFor === p.id;
  const button = el("button", { type: "button", className: "report", textContent: t("report.action") });
  button.setAttribute("aria-label", t("report.action_for", { name: p.name }));
  button.setAttribute("aria-expanded", String(open));
  button.addEventListener("click", () => { app.reportFor = open ? null : p.id; renderPeople(); if (!open) $("report-reason")?.focus(); });
  if (!open) return button;
  const reason = el("select", { id: "report-reason" }, ...REPORT_REASONS.map((r) => el("option", { value: r, textContent: t("report.reason." + r) })));
  const label = el("label", { htmlFor: "report-reason", textContent: t("report.reason") });
  const form = el("form", { className: "report-form" }, label, reason,
    el("button", { type: "submit", className: "primary", textContent: t("report.send") }),
    el("button", { type: "button", className: "cancel", textContent: t("report.cancel") }));
  form.querySelector(".cancel").addEventListener("click", () => { app.reportFor = null; renderPeople(); });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!app.hub.report(p.id, reason.value)) return showNotice("report:offline:" + Date.now(), t("report.offline"), true);
    app.reportFor = null;
    renderPeople();
  });
  return el("div", { className: "report-box" }, button, form);
}

// -- moderation notices: the sender's, the publisher's, the moderators', about me --------------

function onModeration(m) {
  const me = app.hub?.me;
  if (!me) return;
  if (m.type === "moderated") {
    let text = t(`mod.${m.action}.${m.kind}`);
    if (m.strike_limit) text += " " + t("mod.strikes", { n: m.strikes, limit: m.strike_limit });
    if (m.muted) text += " " + t("mod.strike_muted");
    showNotice(`moderated:${m.ref || m.segment || ""}:${m.kind}:${m.lang}:${Date.now()}`, text, false, "strikes");
  } else if (m.type === "track_blocked") {
    const mine = m.participant === me.id;
    const what = t(`mod.blocked_${m.track.kind === "audio" ? "microphone" : "camera"}`);
    showNotice(`blocked:${m.participant}:${m.track.id}`, mine ? t("mod.blocked_mine", { what }) : t("mod.blocked_other", { name: nameOf(m.participant) || "?", what }));
  } else if (m.type === "report_filed") {
    const r = m.report;
    showNotice("report_filed:" + r.id, t("mod.report_filed", { reporter: r.reporter?.name || r.reporter?.identity || "?", name: r.participant?.name || r.participant?.identity || "?", reason: t("report.reason." + r.reason) }));
  } else if (m.type === "reported") {
    showNotice("reported:" + m.report_id, t("report.done"), true);
  } else if (m.type === "moderation_action") {
    const about = m.participant?.id === me.id || (!m.participant?.id && m.participant?.identity === me.identity);
    if (!about) return;
    const kind = m.kind ? t("mod.kind." + m.kind) : t("mod.kind.all");
    showNotice(`action:${m.action}:${m.kind || ""}:${Date.now()}`, t("mod.action." + m.action, { kind }), false, "action");
  }
}

function onHubError(e) {
  if (e.code === "strike_muted") showNotice("strike_muted:" + Date.now(), t("mod.chat_refused"), false, "strikes");
  else if (e.ref && String(e.ref).startsWith("report-")) showNotice("report_error:" + e.ref, t("report.failed", { why: e.message || e.code }), true);
}

function onTrack(r) {
  const tile = ensureTile(r.participant);
  if (r.kind === "audio") {
    const audio = el("audio", { autoplay: true });
    audio.srcObject = r.stream;
    audio.dataset.key = r.key;
    $("audio-sink").append(audio);
    audio.play().catch(() => {});
    tile.audio.set(r.key, { r, audio });
    app.lostAudio.delete(r.participant);
  } else {
    tile.videos.set(r.key, r);
    chooseVideo(tile);
  }
  refreshTile(tile);
  onState({ state: app.hub.state, reason: app.hub.reason, ...app.hub.mediaState() });
}

function onTrackEnded(r) {
  const tile = app.tiles.get(r.participant);
  if (!tile) return;
  if (r.kind === "audio") {
    const a = tile.audio.get(r.key);
    if (a) { a.audio.srcObject = null; a.audio.remove(); tile.audio.delete(r.key); }
  } else {
    tile.videos.delete(r.key);
    chooseVideo(tile);
  }
  refreshTile(tile);
}

// The direct connection's video wins over the hub's copy; a muted one shows the avatar.
function chooseVideo(tile) {
  const list = [...tile.videos.values()];
  const pick = list.find((r) => r.via === "direct" && !r.meta.muted) || list.find((r) => !r.meta.muted) || list[0];
  const stream = pick ? pick.stream : null;
  if (tile.video.srcObject !== stream) { tile.video.srcObject = stream; if (stream) tile.video.play().catch(() => {}); }
}

function onTrackInfo(msg) {
  const pid = msg.participant;
  if (app.hub.me && pid === app.hub.me.id) return;
  if (msg.track.kind === "audio" && !msg.direct) {
    if (msg.state === "unpublished" && app.hub.participants.has(pid)) app.lostAudio.add(pid);
    if (msg.state === "published") app.lostAudio.delete(pid);
  }
  const tile = app.tiles.get(pid);
  if (tile) { chooseVideo(tile); refreshTile(tile); }
}

function updateLocalTile() {
  const tile = ensureTile("me");
  const v = app.local.video;
  const stream = v ? new MediaStream([v]) : null;
  tile.video.srcObject = stream;
  meterOn(app.local.audio, (lvl) => { tile.level = lvl; });
  refreshTile(tile);
}

// Speaking: the hub/peer's audio level of each remote track, our meter for ourselves.
setInterval(() => {
  const now = performance.now();
  let loudest = null;
  for (const tile of app.tiles.values()) {
    let level = 0;
    if (tile.pid === "me") level = app.micMuted ? 0 : tile.level / 4;
    for (const { r } of tile.audio.values()) {
      const src = r.receiver.getSynchronizationSources ? r.receiver.getSynchronizationSources()[0] : null;
      // (a source's timestamp is wall-clock in some browsers, page-relative in others)
      const age = src ? Math.min(Math.abs(now - src.timestamp), Math.abs(Date.now() - src.timestamp)) : Infinity;
      if (age < 1000) level = Math.max(level, src.audioLevel || 0);
    }
    const speaking = level > 0.02;
    if (speaking) tile.speakingUntil = now + 800;
    const on = (tile.speakingUntil || 0) > now;
    if (on !== tile.el.classList.contains("speaking")) { tile.el.classList.toggle("speaking", on); refreshTile(tile); }
    if (on && (!loudest || level > loudest.level)) loudest = { tile, level };
    const hasVideo = tile.video.srcObject && (tile.pid === "me" ? !!app.local.video : now - tile.lastFrame < 1500);
    tile.el.classList.toggle("has-video", !!hasVideo);
  }
  if (loudest && app.tiles.size > 1) {
    for (const tile of app.tiles.values()) tile.el.classList.toggle("active", tile === loudest.tile);
  }
}, 200);

// -- controls: mute, camera, captions, devices ----------------------------------------------

function updateControls() {
  const mic = $("btn-mic"), cam = $("btn-cam"), cc = $("btn-cc");
  const micLabel = !app.local.audio ? t("call.mic_none") : app.micMuted ? t("call.mic_off") : t("call.mic_on");
  mic.setAttribute("aria-pressed", String(!!app.local.audio && !app.micMuted));
  mic.classList.toggle("off", !app.local.audio || app.micMuted);
  mic.setAttribute("aria-label", micLabel); mic.title = micLabel;
  mic.querySelector(".label").textContent = micLabel;
  const camLabel = app.local.video ? t("call.cam_on") : t("call.cam_off");
  cam.setAttribute("aria-pressed", String(!!app.local.video));
  cam.classList.toggle("off", !app.local.video);
  cam.setAttribute("aria-label", camLabel); cam.title = camLabel;
  cam.querySelector(".label").textContent = camLabel;
  const ccLabel = app.captionsOn ? t("call.captions_on") : t("call.captions_off");
  cc.setAttribute("aria-pressed", String(app.captionsOn));
  cc.classList.toggle("off", !app.captionsOn);
  cc.setAttribute("aria-label", ccLabel); cc.title = ccLabel;
  cc.querySelector(".label").textContent = ccLabel;
  $("btn-leave").setAttribute("aria-label", t("call.leave")); $("btn-leave").title = t("call.leave");
}

function watchLocal(track) {
  if (!track) return;
  // the device went away (unplugged, revoked): take the default one again
  track.addEventListener("ended", async () => {
    if (app.local[track.kind] !== track || !app.hub || app.hub.state === "closed") return;
    const fresh = await acquire(track.kind, "").catch(() => null);
    await useLocal(track.kind, fresh);
  });
}

async function acquire(kind, deviceId) {
  const s = await navigator.mediaDevices.getUserMedia(kind === "audio" ? { audio: audioConstraints(deviceId) } : { video: videoConstraints(deviceId) });
  return s.getTracks()[0];
}

async function useLocal(kind, track) {
  const old = app.local[kind];
  app.local[kind] = track || null;
  watchLocal(track);
  if (kind === "audio") { if (track) track.enabled = !app.micMuted; await app.hub.setMicrophone(track); }
  else await app.hub.setCamera(track);
  if (old && old !== track) old.stop();
  updateLocalTile();
  updateControls();
  listDevices();
}

$("btn-mic").addEventListener("click", async () => {
  if (!app.hub) return;
  if (!app.local.audio) { // the microphone is granted after joining
    try { app.micMuted = false; await useLocal("audio", await acquire("audio", $("mic-select-call").value)); } catch { showNotice("mic-denied", t("prejoin.devices_denied")); }
    return;
  }
  app.micMuted = !app.micMuted;
  app.hub.setMuted("audio", app.micMuted);
  updateControls();
  refreshTile(ensureTile("me"));
});

$("btn-cam").addEventListener("click", async () => {
  if (!app.hub) return;
  if (app.local.video) return useLocal("video", null); // the camera light goes off
  try { await useLocal("video", await acquire("video", $("cam-select-call").value)); } catch { showNotice("cam-denied", t("prejoin.devices_denied")); }
});

$("btn-cc").addEventListener("click", () => {
  app.captionsOn = !app.captionsOn;
  renderCaptionBar();
  updateControls();
});

$("mic-select-call").addEventListener("change", async (e) => {
  if (!app.local.audio) return;
  try { await useLocal("audio", await acquire("audio", e.target.value)); } catch (err) { console.warn(err); }
});
$("cam-select-call").addEventListener("change", async (e) => {
  if (!app.local.video) return;
  try { await useLocal("video", await acquire("video", e.target.value)); } catch (err) { console.warn(err); }
});
$("speak-select-call").addEventListener("change", (e) => app.hub && app.hub.setLanguage({ speak: e.target.value }));
$("read-select-call").addEventListener("change", (e) => setRead(e.target.value));
$("show-original").addEventListener("change", (e) => { app.showOriginal = e.target.checked; reshow(); renderCaptionBar(); });

// Tabs: arrow keys move between them (one tab stop), as the ARIA pattern describes.
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab) {
  for (const x of tabs) {
    const on = x === tab;
    x.setAttribute("aria-selected", String(on));
    x.tabIndex = on ? 0 : -1;
    $(x.getAttribute("aria-controls")).hidden = !on;
  }
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(tab);
    const j = e.key === "ArrowRight" ? (i + 1) % tabs.length : e.key === "ArrowLeft" ? (i + tabs.length - 1) % tabs.length : -1;
    if (j >= 0) { e.preventDefault(); selectTab(tabs[j]); tabs[j].focus(); }
  });
}

// -- chat -----------------------------------------------------------------------------------

$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || !app.hub || !app.hub.connected()) return; // kept in the box, not lost
  app.hub.chat(text);
  $("chat-input").value = "";
});

function nameOf(id) {
  const p = app.hub && app.hub.participants.get(id);
  return p ? p.name : "";
}

const timeFmt = new Intl.DateTimeFormat(UI, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// An item shown in my read language: the translation first, the original beneath.
function makeItem(kind, msg, who) {
  const item = { kind, id: msg.id || msg.segment, lang: msg.lang, text: msg.text, who, at: msg.ts ? msg.ts * 1000 : Date.now(), tr: {}, status: {}, partial: kind === "caption" && !msg.final };
  if (msg.translation) {
    if (msg.translation.status === "ok") item.tr[msg.translation.lang] = msg.translation.text;
    else item.status[msg.translation.lang] = msg.translation.status;
    if (msg.translation.status === "unavailable") noteNoPair(msg.lang, msg.translation.lang);
  }
  return item;
}

function noteNoPair(from, to) {
  showNotice(`pair:${from}:${to}`, t("notice.no_translation", { from: shortName(from), to: shortName(to) }));
}

// Fill `node` with the item as my read language shows it.
function renderText(node, item) {
  const read = app.hub?.me?.read || "";
  const main = el("span", { className: "main" }), orig = el("span", { className: "orig" });
  let translated = null, note = "";
  if (base(item.lang) !== base(read)) {
    translated = item.tr[read] ?? null;
    // a partial is translated with its final (the hub translates finals): say so, not "none"
    if (translated === null) note = item.status[read] ? t("captions.untranslated", { status: item.status[read] }) : item.partial ? t("captions.translating") : t("captions.not_in_lang", { lang: shortName(read) });
  }
  main.textContent = translated ?? item.text;
  main.lang = translated !== null ? read : item.lang;
  if (translated !== null && app.showOriginal) { orig.textContent = item.text; orig.lang = item.lang; }
  if (note) { orig.textContent = note; orig.className = "orig note"; }
  node.replaceChildren(...[main, orig.textContent ? orig : null].filter(Boolean));
  return { main: main.textContent, orig: translated !== null ? item.text : "" };
}

function addChat(msg) {
  if (app.items.some((i) => i.kind === "chat" && i.id === msg.id)) return;
  const item = makeItem("chat", msg, msg.from.name);
  app.items.push(item);
  const body = el("div", { className: "body" });
  renderText(body, item);
  item.node = el("li", {}, el("div", { className: "meta" }, el("strong", { textContent: msg.from.name }), " ", el("time", { textContent: timeFmt.format(item.at) })), body);
  item.body = body;
  $("chat-log").append(item.node);
  trim(app.items, 200);
  renderOutbox(app.hub.outbox);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

function trim(list, n) { while (list.length > n) { const x = list.shift(); if (x.node) x.node.remove(); } }

function renderOutbox(items) {
  for (const n of $("chat-log").querySelectorAll("li.pending")) n.remove();
  for (const item of items) {
    const status = item.status === "failed" ? t("chat.failed", { reason: reasonText({ code: item.reason }) || item.reason }) : item.status === "sent" ? t("chat.sending") : t("chat.queued");
    $("chat-log").append(el("li", { className: "pending " + item.status }, el("div", { className: "meta" }, el("strong", { textContent: app.hub?.me?.name || "" }), " ", el("em", { textContent: status })), el("div", { className: "body", textContent: item.text })));
  }
}

// -- captions ---------------------------------------------------------------------------------

function onCaption(c) {
  let seg = app.segments.get(c.segment);
  if (!seg) { seg = { first: Date.now() }; app.segments.set(c.segment, seg); }
  Object.assign(seg, { c, updated: Date.now(), item: makeItem("caption", c, nameOf(c.speaker)) });
  if (c.final) {
    seg.final = true;
    const item = seg.item;
    item.start = (seg.first - app.startedAt) / 1000;
    item.end = (Date.now() - app.startedAt) / 1000;
    const body = el("div", { className: "body" });
    const shown = renderText(body, item);
    item.node = el("li", {}, el("div", { className: "meta" }, el("strong", { textContent: item.who }), " ", el("time", { textContent: timeFmt.format(item.at) })), body);
    item.body = body;
    app.items.push(item);
    app.history.push(item);
    $("caption-log").append(item.node);
    $("caption-log").scrollTop = $("caption-log").scrollHeight;
    trim(app.items, 200);
    // screen readers hear finals only, once (partials would chatter)
    const sr = $("sr-captions");
    sr.append(el("p", { textContent: `${item.who}: ${shown.main}` }));
    while (sr.children.length > 3) sr.firstElementChild.remove();
  }
  renderCaptionBar();
}

// At most the last three utterances, newest at the bottom; they fade when speech stops.
function renderCaptionBar() {
  const bar = $("caption-bar");
  const now = Date.now();
  for (const [k, seg] of app.segments) if (now - seg.updated > 12000) app.segments.delete(k);
  const recent = [...app.segments.values()].sort((a, b) => a.first - b.first).slice(-3);
  bar.hidden = !app.captionsOn || !recent.length;
  bar.replaceChildren(...recent.map((seg) => {
    const line = el("div", { className: "line " + (seg.c.final ? "final" : "partial") });
    const text = el("div", { className: "text" });
    renderText(text, seg.item);
    line.append(el("span", { className: "who", textContent: seg.item.who }), text);
    return line;
  }));
}
setInterval(() => { if (app.segments.size) renderCaptionBar(); }, 2000);

function pad(n, w = 2) { return String(Math.floor(n)).padStart(w, "0"); }
function vttTime(s) { s = Math.max(0, s); return `${pad(s / 3600)}:${pad((s % 3600) / 60)}:${pad(s % 60)}.${pad((s % 1) * 1000, 3)}`; }

function download(name, type, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function shownLines(item) {
  const tmp = el("div");
  const shown = renderText(tmp, item);
  return [shown.main, shown.orig].filter(Boolean);
}

function stamp() { return new Date(app.startedAt).toISOString().slice(0, 16).replace(/[:T]/g, "-"); }

$("dl-txt").addEventListener("click", () => {
  const lines = app.history.map((i) => `[${timeFmt.format(i.at)}] ${i.who}: ${shownLines(i).join("\n    ")}`);
  download(`captions-${app.room || "call"}-${stamp()}.txt`, "text/plain", lines.join("\n") + "\n");
});
$("dl-vtt").addEventListener("click", () => {
  const cues = app.history.map((i, n) => `${n + 1}\n${vttTime(i.start)} --> ${vttTime(Math.max(i.end, i.start + 1))}\n<v ${i.who.replace(/[<>]/g, "")}>${shownLines(i).join("\n").replace(/-->/g, "→")}`);
  download(`captions-${app.room || "call"}-${stamp()}.vtt`, "text/vtt", "WEBVTT\n\n" + cues.join("\n\n") + "\n");
});

// -- reading language ---------------------------------------------------------------------

function refreshCallReadList() {
  const hub = app.hub;
  if (!hub || !hub.me) return;
  const speakers = [...new Set([...hub.participants.values()].filter((p) => p.id !== hub.me.id).map((p) => p.speak))];
  fillLangs($("read-select-call"), hub.me.read, (c) => readNote(c, speakers.length ? speakers : [hub.me.speak]));
}

// Switch what I read: what was received in that language is shown again; the rest says so.
function setRead(code) {
  const hub = app.hub;
  if (!hub || !hub.me) return;
  hub.setLanguage({ read: code });
  hub.me = { ...hub.me, read: code }; // shown at once; the hub's participant_updated confirms
  reshow();
  renderCaptionBar();
  if (app.items.some((i) => base(i.lang) !== base(code) && i.tr[code] === undefined)) showNotice("reshown:" + code, t("notice.reshown", { lang: shortName(code) }));
}

function reshow() {
  for (const item of app.items) if (item.body) renderText(item.body, item);
}

// -- notices: once each, apart from the captions, in plain words ------------------------------

function onNotice(n) {
  if (n.type === "caption_unavailable") {
    const mine = app.hub.me && n.participant === app.hub.me.id;
    const key = `unavailable:${mine ? "me" : n.participant}:${n.lang}`;
    showNotice(key, mine ? t("notice.caption_unavailable_me", { lang: shortName(n.lang) }) : t("notice.caption_unavailable", { name: nameOf(n.participant), lang: shortName(n.lang) }), !mine);
  } else if (n.type === "caption_degraded") {
    showNotice("degraded", t("notice.caption_degraded"), true);
  } else if (n.type === "media_closed") {
    showNotice("media_closed:" + Date.now(), t("notice.media_closed", { reason: n.reason }), true);
  }
}

// `group`: a newer notice of the same group replaces the one shown (strikes, moderator actions)
function showNotice(key, text, transient = false, group = "") {
  if (app.shownNotices.has(key)) return;
  app.shownNotices.add(key);
  if (group) for (const old of $("notices").querySelectorAll(`[data-group="${group}"]`)) old.remove();
  const close = el("button", { type: "button", className: "close", textContent: "×" });
  close.setAttribute("aria-label", t("notice.dismiss"));
  const p = el("p", { className: "notice" }, el("span", { textContent: text }), close);
  if (group) p.dataset.group = group;
  close.addEventListener("click", () => p.remove());
  $("notices").append(p);
  while ($("notices").children.length > 3) $("notices").firstElementChild.remove();
  if (transient) setTimeout(() => p.remove(), 15000);
}

boot();
