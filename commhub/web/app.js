// The page at /: join with a pasted token (or ?token=), show state, people, chat and media.
import { CommHub } from "/static/commhub.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const AUDIO = { echoCancellation: params.get("processing") !== "off", noiseSuppression: params.get("processing") !== "off", autoGainControl: params.get("processing") !== "off" };
let hub = null;
let localStream = null;

if (params.get("token")) $("token").value = params.get("token");
if (params.get("video") === "1") $("with-video").checked = true;

function showState(s) {
  const el = $("state");
  el.textContent = `signal: ${s.signal} · media: ${s.media} · mode: ${s.mode}` + (s.direct !== "none" ? ` · direct: ${s.direct}` : "");
  el.className = s.media === "connected" || s.direct === "connected" ? "ok" : s.media === "failed" ? "bad" : "";
  document.body.dataset.media = s.media;
}

function nameOf(id) {
  const p = hub && hub.participants.get(id);
  return p ? p.name : id;
}

async function join(ev) {
  ev.preventDefault();
  hub = new CommHub({ token: $("token").value.trim(), name: $("name").value.trim() || undefined });
  window.commhub = hub; // for debugging and tests
  hub.addEventListener("state", (e) => showState(e.detail));
  hub.addEventListener("participants", (e) => {
    $("participants").replaceChildren(...e.detail.map((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.name} (${p.speak}→${p.read})` + (p.id === hub.me.id ? " — you" : "");
      return li;
    }));
  });
  hub.addEventListener("chat", (e) => {
    const li = document.createElement("li");
    li.append(`${e.detail.from.name}: `, ...bilingual(e.detail));
    $("chat").append(li);
  });
  hub.addEventListener("track", (e) => addTile(e.detail));
  hub.addEventListener("trackended", (e) => { const t = document.getElementById("tile-" + e.detail.key); if (t) t.remove(); });
  hub.addEventListener("trackinfo", (e) => {
    for (const r of hub.remote.values()) {
      const t = document.getElementById("tile-" + r.key);
      if (t) t.classList.toggle("muted", !!r.meta.muted);
    }
  });
  hub.addEventListener("caption", (e) => showCaption(e.detail));
  hub.addEventListener("notice", (e) => {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = e.detail.type === "caption_unavailable"
      ? `${nameOf(e.detail.participant)}: no captions for ${e.detail.lang}`
      : `captions are behind: ${e.detail.dropped_partials} partial(s) skipped`;
    $("captions").append(li);
  });
  hub.addEventListener("error", (e) => console.warn("commhub error", e.detail));
  try {
    await hub.connect();
  } catch (err) {
    $("state").textContent = "could not join (closed " + (err.code || "") + ")";
    $("state").className = "bad";
    return;
  }
  $("read-lang").value = hub.me.read;
  $("join").disabled = true; $("leave").disabled = false;
  $("chat-text").disabled = false; $("chat-form").querySelector("button").disabled = false;
  const wantVideo = $("with-video").checked;
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO, video: wantVideo });
    $("local-video").srcObject = localStream;
    await hub.publish(localStream);
    $("mute-audio").disabled = false; $("mute-video").disabled = !wantVideo;
  } catch (err) {
    console.warn("no local media, receiving only", err);
    await hub.receiveOnly();
  }
}

// The text in my language first, the original beside it; why, when it could not be translated.
function bilingual(msg) {
  const t = msg.translation;
  const main = document.createElement("span");
  main.className = "text";
  main.textContent = t && t.status === "ok" ? t.text : msg.text;
  if (!t) return [main];
  const orig = document.createElement("span");
  orig.className = "original";
  orig.textContent = t.status === "ok" ? msg.text : `(not translated: ${t.status})`;
  orig.lang = t.status === "ok" ? msg.lang : "";
  return [main, orig];
}

// One line per utterance (segment): partials replace it in place, the final settles it.
function showCaption(c) {
  let li = document.getElementById("seg-" + c.segment);
  if (!li) {
    li = document.createElement("li");
    li.id = "seg-" + c.segment;
    $("captions").append(li);
    while ($("captions").children.length > 8) $("captions").firstElementChild.remove();
  }
  li.className = c.final ? "final" : "partial";
  const who = document.createElement("b");
  who.textContent = `${nameOf(c.speaker)}: `;
  li.replaceChildren(who, ...bilingual(c));
}

function addTile(r) {
  const tile = document.createElement("div");
  tile.className = "tile" + (r.meta.muted ? " muted" : "");
  tile.id = "tile-" + r.key;
  const el = document.createElement(r.track.kind === "video" ? "video" : "audio");
  el.autoplay = true; el.playsInline = true; el.srcObject = r.stream;
  if (r.track.kind === "audio") el.controls = true;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = `${nameOf(r.participant)} · ${r.meta.source}`;
  tile.append(el, who);
  $("remote").append(tile);
}

function toggle(kind, button, onLabel, offLabel) {
  const track = localStream && localStream.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  const muted = track.enabled;
  hub.setMuted(track, muted);
  button.textContent = muted ? offLabel : onLabel;
}

$("join-form").addEventListener("submit", join);
$("leave").addEventListener("click", () => { hub.leave(); $("join").disabled = false; $("leave").disabled = true; });
$("mute-audio").addEventListener("click", (e) => toggle("audio", e.target, "Mute mic", "Unmute mic"));
$("mute-video").addEventListener("click", (e) => toggle("video", e.target, "Stop camera", "Start camera"));
$("read-lang").addEventListener("change", (e) => { if (hub && e.target.validity.valid && e.target.value) hub.setLanguage({ read: e.target.value }); });
$("chat-form").addEventListener("submit", (e) => { e.preventDefault(); const t = $("chat-text").value.trim(); if (t) hub.chat(t); $("chat-text").value = ""; });
if (params.get("token") && params.get("autojoin") === "1") $("join-form").requestSubmit();
