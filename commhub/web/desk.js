// A desk's public page (/desk/<name>): a visitor gives a name, languages and a topic, joins
// the queue, sees its place and the wait live, and the call starts here when an agent takes
// it. No account: the desk's public link mints the visitor token (POST /v1/desks/D/visit).
import { DeskLink } from "/static/desklink.js";
import {
  $, PROCESSING, applyStrings, browserLang, el, fillLangs, langs, loadLanguages, openCall,
  readNote, reasonText, shortName, show, showError, showState, speakNote, t, waitText, whenText,
} from "/static/deskui.js";

const SCREENS = ["loading", "prejoin", "queue", "unavailable", "session", "ended"];
const DESK = decodeURIComponent((location.pathname.match(/^\/desk\/([^/?#]+)/) || [])[1] || "");
const KEY = `commhub.desk.${DESK}`; // the visitor token, for this tab only: a reload regains the place

const page = {
  desk: null, // GET /v1/desks/D
  link: null, token: null, prefs: null,
  hangUp: null, waiting: null, refresh: 0,
};
window.commhubDesk = page; // for tests and debugging

function setTitle(title) {
  $("desk-title").textContent = title || t("desk.page");
  document.title = `${title || t("desk.page")} · commhub`;
}

// -- the desk, before joining --------------------------------------------------------------

async function fetchDesk() {
  const r = await fetch(`/v1/desks/${encodeURIComponent(DESK)}`, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw { code: body.error || "http_" + r.status, message: body.message };
  return body;
}

function renderDesk(d) {
  page.desk = d;
  setTitle(d.title);
  $("prejoin-title").textContent = d.title || d.name;
  const open = $("desk-open");
  open.textContent = !d.open ? t("desk.closed") : d.queue_full ? t("desk.full") : t("desk.open");
  open.dataset.open = String(!!d.open && !d.queue_full);
  // closed: nothing to join until it opens (the desk is asked again every 30 s)
  $("join-button").disabled = !d.open;
  let wait = "";
  if (!d.open) wait = d.opens_at ? t("desk.opens", { when: whenText(d.opens_at) }) : "";
  else if (d.queue_full) wait = t("desk.full_now");
  else wait = d.estimated_wait === null ? t("desk.nobody") : t("desk.wait_now", { wait: waitText(d.estimated_wait) });
  $("desk-wait").textContent = wait;
  $("desk-closed-message").textContent = d.message || "";
  $("desk-closed-message").hidden = !d.message;
}

function refreshLangNotes() {
  const speak = $("speak-select").value;
  fillLangs($("read-select"), $("read-select").value, (c) => readNote(c, [speak]), page.desk?.languages || []);
  const s = $("speak-select").selectedOptions[0], r = $("read-select").selectedOptions[0];
  $("lang-note").textContent = [s?.dataset.missing && `${shortName(speak)}: ${s.dataset.missing}`, r?.dataset.missing && `${shortName(r.value)}: ${r.dataset.missing}`].filter(Boolean).join(" · ");
}
$("speak-select").addEventListener("change", () => { $("read-select").value = $("speak-select").value; refreshLangNotes(); });
$("read-select").addEventListener("change", refreshLangNotes);

async function prejoin(error = "") {
  show(SCREENS, "prejoin");
  const d = page.desk;
  const offered = [...new Set([...(d.languages || []), ...langs.languages.map((l) => l.code)])];
  const mine = page.prefs?.speak || browserLang(offered);
  fillLangs($("speak-select"), mine, speakNote, d.languages || []);
  fillLangs($("read-select"), page.prefs?.read || mine, () => "", d.languages || []);
  refreshLangNotes();
  const topics = d.topics || [];
  $("topic-row").hidden = !topics.length;
  $("topic-select").replaceChildren(el("option", { value: "", textContent: t("desk.topic_none") }), ...topics.map((x) => el("option", { value: x, textContent: x })));
  if (page.prefs?.topic) $("topic-select").value = page.prefs.topic;
  if (page.prefs?.name) $("name-input").value = page.prefs.name;
  showError("prejoin-error", error);
  $("join-button").disabled = !d.open;
  clearInterval(page.refresh);
  // the wait and the opening hours move while the visitor fills the form
  page.refresh = setInterval(async () => {
    if (document.body.dataset.screen !== "prejoin") return clearInterval(page.refresh);
    try { renderDesk(await fetchDesk()); } catch { /* keep what is shown */ }
  }, 30000);
  if (!$("name-input").value) $("name-input").focus(); else $("join-button").focus();
}

$("visit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("name-input").value.trim();
  if (!name) { $("name-input").focus(); return; }
  const prefs = { name, speak: $("speak-select").value, read: $("read-select").value, topic: $("topic-select").value || null, cam: $("cam-check").checked };
  page.prefs = prefs;
  $("join-button").disabled = true;
  $("join-button").textContent = t("desk.joining");
  showError("prejoin-error", "");
  try {
    const body = { name, speak: prefs.speak, read: prefs.read, ...(prefs.topic && { topic: prefs.topic }) };
    const r = await fetch(`/v1/desks/${encodeURIComponent(DESK)}/visit`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const answer = await r.json().catch(() => ({}));
    if (r.status === 409 && (answer.error === "desk_closed" || answer.error === "desk_full")) {
      unavailable({ reason: answer.error === "desk_closed" ? "closed" : "full", message: answer.message, opens_at: answer.opens_at, estimated_wait: answer.estimated_wait });
      return;
    }
    if (!r.ok) throw { code: answer.error || "http_" + r.status, message: answer.message };
    sessionStorage.setItem(KEY, JSON.stringify({ token: answer.token, expires_at: answer.expires_at, prefs }));
    connect(answer.token);
  } catch (reason) {
    showError("prejoin-error", reasonText(reason.code ? reason : { code: "unreachable" }));
  } finally {
    $("join-button").disabled = !page.desk?.open;
    $("join-button").textContent = t("desk.join");
  }
});

// -- the desk connection -----------------------------------------------------------------------

function connect(token) {
  if (page.link) page.link.finish({ code: "left", message: "" });
  page.token = token;
  const link = new DeskLink({ token });
  page.link = window.desklink = link;
  link.addEventListener("state", (e) => onState(link, e.detail));
  link.addEventListener("message", (e) => onMessage(e.detail));
  show(SCREENS, "queue");
  $("position-text").textContent = t("state.connecting");
  $("position-number").textContent = "…";
  link.start();
}

// The queue's connection is shown from joining on; in the call, the call's (the queue's
// again if it drops).
function pills() {
  const inCall = !!page.hangUp;
  $("call-conn").hidden = !inCall;
  $("conn").hidden = !page.link || (inCall && page.link.state === "connected");
}

function onState(link, s) {
  if (link !== page.link) return;
  showState($("conn"), $("conn-text"), s);
  pills();
  document.body.dataset.state = s.state;
  const lost = s.state === "reconnecting";
  $("queue-reconnecting").hidden = !lost;
  if (lost) $("queue-reconnecting").textContent = page.desk?.grace ? t("queue.reconnecting_grace", { s: Math.round(page.desk.grace) }) : t("queue.reconnecting");
  if (s.state !== "closed") return;
  const code = s.reason?.code;
  closeCall();
  if (code === "left") return ended(t("left.title"), t("left.text"));
  if (String(code).startsWith("token_") || code === "forbidden") {
    sessionStorage.removeItem(KEY);
    return prejoin(reasonText(s.reason));
  }
  ended(t("ended.closed"), reasonText(s.reason));
}

function onMessage(msg) {
  switch (msg.type) {
    case "desk_waiting": return waiting(msg);
    case "desk_unavailable": return unavailable(msg);
    case "desk_assigned": return assigned(msg);
    case "desk_ended":
      closeCall();
      return ended(t("session.ended"), t("session.thanks"));
    case "error":
      if (document.body.dataset.screen === "queue") $("queue-notice").textContent = reasonText(msg);
      return;
  }
}

function waiting(msg) {
  page.waiting = msg;
  closeCall();
  if (msg.desk?.title) setTitle(msg.desk.title);
  show(SCREENS, "queue");
  const n = msg.position;
  $("position-number").textContent = String(n);
  $("position-text").textContent = n <= 1 ? t("queue.next") : t("queue.position", { n });
  $("wait-text").textContent = t("queue.wait", { wait: waitText(msg.estimated_wait) });
  $("agents-text").textContent = msg.agents_online ? t("queue.agents", { n: msg.agents_online }) : t("desk.nobody");
  if (msg.notice) {
    const key = "queue.notice." + msg.notice.code;
    $("queue-notice").textContent = t(key) === key ? msg.notice.message : t(key);
    $("queue-notice").hidden = false;
  }
}

// closed or full: said by the hub at desk_join (the socket stays open) or by POST /visit
function unavailable(msg) {
  show(SCREENS, "unavailable");
  const titles = { closed: "unavailable.closed", full: "unavailable.full", deleted: "unavailable.deleted" };
  $("unavailable-title").textContent = t(titles[msg.reason] || "unavailable.closed");
  $("unavailable-message").textContent = msg.reason === "full" ? t("unavailable.full_text") : msg.message || "";
  const wait = msg.estimated_wait !== null && msg.estimated_wait !== undefined ? t("desk.wait_now", { wait: waitText(msg.estimated_wait) }) : "";
  $("unavailable-opens").textContent = msg.opens_at ? t("unavailable.opens", { when: whenText(msg.opens_at) }) : wait;
  $("retry").hidden = msg.reason === "deleted";
  $("retry").focus();
}

$("retry").addEventListener("click", async () => {
  if (page.link && page.link.connected()) { page.link.rejoin(); return; }
  try { renderDesk(await fetchDesk()); } catch (reason) { return ended(t("unavailable.deleted"), reasonText(reason)); }
  prejoin();
});

function assigned(msg) {
  show(SCREENS, "session");
  const who = msg.with?.name || "";
  $("session-title").textContent = t("session.with", { name: who });
  // on a phone the title is cut at its end: who the call is with comes first
  setTitle(`${t("session.with", { name: who })} · ${page.desk?.title || msg.desk?.title || ""}`);
  if (page.hangUp) return; // a reconnect: the call is still up
  showState($("call-conn"), $("call-conn-text"), { state: "connecting" }, t("session.call"));
  page.hangUp = openCall($("call-holder"), msg.token, {
    cam: !!page.prefs?.cam,
    processing: PROCESSING,
    onEvent: (e) => {
      if (e.kind === "state") showState($("call-conn"), $("call-conn-text"), e, t("session.call"));
      if (e.kind === "recording") $("recording").hidden = !e.on;
      // the call's own leave button: leaving the call leaves the desk
      if (e.kind === "leave") { sessionStorage.removeItem(KEY); page.link?.leave(); }
    },
  });
  pills();
}

function closeCall() {
  if (page.hangUp) { page.hangUp(); page.hangUp = null; }
  $("recording").hidden = true;
  pills();
  if (page.desk) setTitle(page.desk.title);
}

function ended(title, text) {
  show(SCREENS, "ended");
  $("ended-title").textContent = title;
  $("ended-text").textContent = text || "";
  $("again").hidden = !page.desk;
  if (!$("again").hidden) $("again").focus();
}

$("leave-queue").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  page.link?.leave();
});

$("again").addEventListener("click", async () => {
  // the desk connection is still open after a session: desk_join queues again
  if (page.link && page.link.state !== "closed") { show(SCREENS, "queue"); page.link.rejoin(); return; }
  try { renderDesk(await fetchDesk()); } catch { /* shown as it was */ }
  prejoin();
});

// -- start ---------------------------------------------------------------------------------

async function boot() {
  applyStrings();
  show(SCREENS, "loading");
  try {
    const [d] = await Promise.all([fetchDesk(), loadLanguages()]);
    renderDesk(d);
  } catch (reason) {
    setTitle("");
    show(SCREENS, "ended");
    $("ended-title").textContent = t("unavailable.deleted");
    $("ended-text").textContent = reasonText(reason.code ? reason : { code: "unreachable" });
    $("again").hidden = true;
    return;
  }
  const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
  if (saved && saved.token && saved.expires_at * 1000 > Date.now() + 5000) {
    page.prefs = saved.prefs;
    return connect(saved.token); // a reload within the grace period regains the place
  }
  prejoin();
}

boot();
