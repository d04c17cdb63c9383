// The agent console (/desk/<name>/console#token=<agent token>): my status, the desk's queue
// with each visitor's languages, topic and wait (and whether captions and translation bridge
// them to my languages), taking a visitor, then the call with them in their private room,
// adding a colleague or an interpreter, transferring, ending with an outcome.
import { DeskLink } from "/static/desklink.js";
import {
  $, PROCESSING, applyStrings, base, el, loadLanguages, openCall, reasonText, shortName, show,
  showError, showState, since, t,
} from "/static/deskui.js";

const SCREENS = ["landing", "console"];
const DESK = decodeURIComponent((location.pathname.match(/^\/desk\/([^/?#]+)/) || [])[1] || "");
const KEY = `commhub.console.${DESK}`; // this tab only: a reload signs back in

const page = {
  token: null, claims: {}, me: "", myLangs: [], link: null,
  state: null, // the last desk_state
  status: "available",
  session: null, // my desk_assigned (or an accepted desk_invited: {guest: true})
  invites: new Map(), // session -> desk_invited
  hangUp: null,
};
window.commhubConsole = page; // for tests and debugging

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch { return {}; }
}

// The tab's title counts who waits: an agent on another tab sees the queue grow.
function setTitle(title) {
  $("desk-title").textContent = title ? `${title} · ${t("console.page")}` : t("console.page");
  const waiting = page.state?.queue.length || 0;
  document.title = `${waiting ? `(${waiting}) ` : ""}${title || t("console.page")} · commhub`;
}

// -- signing in ----------------------------------------------------------------------------

function landing(error = "") {
  show(SCREENS, "landing");
  showError("landing-error", error);
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  if (token) signIn(token);
});

function signIn(token) {
  const claims = decodeClaims(token);
  if (!claims.desk || claims.desk.as !== "agent") return landing(t("console.not_agent"));
  if (DESK && claims.desk.name !== DESK) return landing(reasonText({ code: "token_wrong_room" }));
  page.token = token;
  page.claims = claims;
  page.me = claims.sub || "";
  page.myLangs = [...new Set([...(claims.desk.languages || []), claims.lang?.speak].filter(Boolean))];
  sessionStorage.setItem(KEY, token);
  setTitle(claims.desk.name);
  show(SCREENS, "console");
  renderIdle();
  page.status = sessionStorage.getItem(KEY + ".status") || "available";
  const link = new DeskLink({ token, status: page.status });
  page.link = window.desklink = link;
  link.addEventListener("state", (e) => onState(link, e.detail));
  link.addEventListener("message", (e) => onMessage(e.detail));
  link.start();
}

function onState(link, s) {
  if (link !== page.link) return;
  showState($("conn"), $("conn-text"), s, t("console.desk_conn"));
  document.body.dataset.state = s.state;
  if (s.state !== "closed") return;
  closeCall();
  page.session = null;
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(KEY + ".status");
  landing(s.reason?.code === "left" ? "" : reasonText(s.reason));
}

function onMessage(msg) {
  switch (msg.type) {
    case "desk_state": return onDeskState(msg);
    case "desk_assigned": return onAssigned(msg);
    case "desk_invited": return onInvited(msg);
    case "desk_ended": return onEnded(msg);
  }
}

// -- status ----------------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="status"]')) {
  radio.addEventListener("change", async () => {
    if (!radio.checked) return;
    page.status = radio.value;
    if (page.link) page.link.status = radio.value; // a reconnect signs in with it
    try { await page.link.request({ type: "desk_status", status: radio.value }); } catch (err) { actionError(err); }
  });
}

function renderStatus(status) {
  page.status = status;
  sessionStorage.setItem(KEY + ".status", status); // a reload signs in as it was
  if (page.link) page.link.status = status;
  for (const r of document.querySelectorAll('input[name="status"]')) r.checked = r.value === status;
  document.body.dataset.status = status;
}

// -- the queue and the agents ------------------------------------------------------------------

function onDeskState(msg) {
  page.state = msg;
  setTitle(msg.desk.title || msg.desk.name);
  if (msg.you) renderStatus(msg.you.status);
  else {
    const mine = msg.agents.find((a) => a.identity === page.me);
    if (mine) renderStatus(mine.status);
  }
  renderQueue();
  renderAgents();
  renderTools();
  if (!page.session) renderIdle();
}

const manual = () => page.state?.desk.assign === "manual";

function support(entry) {
  const bits = [];
  bits.push(entry.captions ? [true, t("console.captions_yes")] : [false, t("console.captions_no", { lang: shortName(entry.speak) })]);
  const mine = page.myLangs.length ? page.myLangs : Object.keys(entry.translate);
  if (mine.some((l) => base(l) === base(entry.speak))) bits.push([true, t("console.same_lang")]);
  else for (const l of mine) bits.push([!!entry.translate[l], t(entry.translate[l] ? "console.translate_yes" : "console.translate_no", { lang: shortName(l) })]);
  return bits;
}

function renderQueue() {
  const st = page.state;
  if (!st) return;
  const list = $("queue-list");
  $("queue-count").textContent = t("console.queue_count", { n: st.queue.length });
  $("take-next").hidden = !manual();
  $("auto-note").hidden = manual();
  const busy = !!page.session && !page.session.guest;
  const takeable = st.queue.filter((v) => !v.for_agent || v.for_agent === page.me);
  $("take-next").disabled = busy || !takeable.length;
  // a keyboard user on a "Take" button keeps it while the list is redrawn
  const focused = document.activeElement?.closest?.("#queue-list li")?.dataset.ticket;
  if (!st.queue.length) {
    list.replaceChildren(el("li", { className: "empty", textContent: t("console.queue_empty") }));
    return;
  }
  list.replaceChildren(...st.queue.map((v) => {
    const tags = [];
    if (!v.connected) tags.push(el("span", { className: "tag warn", textContent: t("console.offline") }));
    if (v.for_agent) tags.push(el("span", { className: "tag", textContent: v.for_agent === page.me ? t("console.for_you") : t("console.for_other") }));
    else if (v.front) tags.push(el("span", { className: "tag", textContent: t("console.front") }));
    if (v.transferred) tags.push(el("span", { className: "tag", textContent: t("console.transferred", { agent: v.transferred.from_agent }) }));
    const take = el("button", { type: "button", className: "secondary small take", textContent: t("console.take") });
    take.setAttribute("aria-label", t("console.take_label", { name: v.name }));
    take.disabled = busy || (v.for_agent && v.for_agent !== page.me);
    take.hidden = !manual();
    take.addEventListener("click", () => takeVisitor(v.ticket));
    const waited = el("span", { className: "waited" });
    waited.dataset.since = String(v.since);
    waited.textContent = t("console.waiting_for", { t: since(v.since) });
    const item = el("li", { className: "visitor" + (v.connected ? "" : " offline") },
      el("div", { className: "row" }, el("div", {}, el("strong", { className: "who" }, el("bdi", { textContent: v.name })), waited), take),
      el("div", { className: "muted-text" }, t("console.langs", { speak: shortName(v.speak), read: shortName(v.read) }), " · ", v.topic ? el("bdi", { textContent: v.topic }) : t("console.topic_none")),
      el("ul", { className: "support" }, ...support(v).map(([ok, text]) => el("li", { className: ok ? "ok" : "no", textContent: text }))),
      tags.length ? el("div", { className: "tags" }, ...tags) : null,
    );
    item.dataset.ticket = v.ticket;
    return item;
  }));
  if (focused) list.querySelector(`li[data-ticket="${CSS.escape(focused)}"] .take`)?.focus();
}

setInterval(() => {
  for (const n of document.querySelectorAll(".waited[data-since]")) n.textContent = t("console.waiting_for", { t: since(Number(n.dataset.since)) });
}, 1000);

function renderAgents() {
  const st = page.state;
  $("agents-list").replaceChildren(...st.agents.map((a) => el("li", { className: "agent" + (a.connected ? "" : " offline") },
    Object.assign(el("span", { className: "status-dot", ariaHidden: "true" }), { title: t("status." + a.status) }),
    el("bdi", { textContent: a.name || a.identity }),
    a.identity === page.me ? ` (${t("console.you")})` : "",
    el("span", { className: "muted-text", textContent: ` · ${t("status." + a.status)} · ${a.languages.map(shortName).join(", ")}${a.sessions ? " · " + t("console.in_session") : ""}${a.connected ? "" : " · " + t("console.offline_agent")}` }),
  )));
  $("agents-list").querySelectorAll(".status-dot").forEach((dot, i) => { dot.dataset.status = st.agents[i].status; });
}

async function takeVisitor(ticket) {
  showError("action-error", "");
  try { await page.link.request({ type: "desk_take", ...(ticket && { ticket }) }); } catch (err) { actionError(err); }
}
$("take-next").addEventListener("click", () => takeVisitor(null));

function actionError(err) {
  showError("action-error", t("console.failed", { reason: reasonText(err) || err.message || "" }));
}

// -- a session ---------------------------------------------------------------------------------

function renderIdle() {
  $("idle").hidden = !!page.session;
  $("session").hidden = !page.session;
  $("session-tools").hidden = !page.session || !!page.session.guest;
  if (page.session) document.body.dataset.session = page.session.guest ? "guest" : "mine";
  else delete document.body.dataset.session;
  const away = page.status === "away";
  $("idle-text").textContent = away ? t("console.idle_away") : manual() ? t("console.idle") : t("console.idle_auto");
}

function onAssigned(msg) {
  showError("action-error", "");
  const again = page.session && page.session.session === msg.session;
  page.session = msg;
  $("last-outcome").textContent = "";
  const v = msg.visitor || {};
  $("session-title").textContent = t("console.session", { name: v.name || "" });
  $("session-visitor").textContent = [t("console.langs", { speak: shortName(v.speak), read: shortName(v.read) }), v.topic ? t("console.visitor_topic", { topic: v.topic }) : ""].filter(Boolean).join(" · ");
  const tr = msg.transferred;
  $("session-transfer").hidden = !tr;
  if (tr) $("session-transfer").textContent = tr.note ? t("console.transfer_note", { agent: tr.from_agent, note: tr.note }) : t("console.transferred", { agent: tr.from_agent });
  renderTranscript(msg.transcript || []);
  if (!again) { // a new session: a clean form (a reconnect keeps what was typed)
    $("add-result").replaceChildren();
    $("end-note").value = "";
    $("transfer-note").value = "";
    $("transfer-desk").value = msg.desk?.name || DESK;
    $("outcome-select").value = "resolved";
    $("add-box").open = $("transfer-box").open = false;
  }
  renderIdle();
  renderQueue();
  renderTools();
  if (again && page.hangUp) return; // a reconnect: the call is still up
  closeCall();
  $("call-conn").hidden = false;
  showState($("call-conn"), $("call-conn-text"), { state: "connecting" }, t("session.call"));
  page.hangUp = openCall($("call-holder"), msg.token, {
    processing: PROCESSING,
    onEvent: (e) => {
      if (e.kind === "state") showState($("call-conn"), $("call-conn-text"), e, t("session.call"));
      if (e.kind === "recording") $("recording").hidden = !e.on;
      if (e.kind === "leave") {
        if (page.session?.guest) { closeCall(); page.session = null; renderIdle(); renderQueue(); }
        else $("outcome-select").focus(); // an agent ends a session with an outcome
      }
    },
  });
}

function renderTranscript(lines) {
  $("transcript-box").hidden = !lines.length;
  $("transcript-box").open = lines.length > 0; // what was said before: open, it can be folded
  const read = page.claims.lang?.read || page.myLangs[0] || "";
  $("transcript").replaceChildren(...lines.map((l) => {
    const translated = l.translations && (l.translations[read] || Object.entries(l.translations).find(([k]) => base(k) === base(read))?.[1]);
    return el("li", {}, el("strong", {}, el("bdi", { textContent: l.name || "" })), ": ",
      el("span", { textContent: translated || l.text, lang: translated ? read : l.lang || "" }),
      translated ? el("span", { className: "orig", textContent: l.text, lang: l.lang || "" }) : null);
  }));
}

function renderTools() {
  const st = page.state;
  if (!st) return;
  const others = st.agents.filter((a) => a.identity !== page.me && a.connected);
  const add = $("add-select");
  const keep = add.value;
  add.replaceChildren(...(others.length ? others.map((a) => el("option", { value: a.identity, textContent: `${a.name || a.identity} (${t("status." + a.status)})` })) : [el("option", { value: "", textContent: t("console.add_none") })]));
  if (others.some((a) => a.identity === keep)) add.value = keep;
  $("add-button").disabled = !others.length;
  const tr = $("transfer-agent");
  const chosen = tr.value;
  tr.replaceChildren(el("option", { value: "", textContent: t("console.transfer_any") }), ...others.map((a) => el("option", { value: a.identity, textContent: a.name || a.identity })));
  if ([...tr.options].some((o) => o.value === chosen)) tr.value = chosen;
}

function onInvited(msg) {
  page.invites.set(msg.session, msg);
  const join = el("button", { type: "button", className: "primary small", textContent: t("console.join_invite") });
  const dismiss = el("button", { type: "button", className: "secondary small", textContent: t("console.dismiss") });
  const card = el("p", { className: "notice-line invite" }, el("span", { textContent: t("console.invited", { by: msg.by?.name || "", name: msg.visitor?.name || "" }) }), join, dismiss);
  join.addEventListener("click", () => { card.remove(); onAssigned({ ...msg, guest: true }); });
  dismiss.addEventListener("click", () => card.remove());
  $("invites").append(card);
}

function onEnded(msg) {
  if (!page.session || page.session.session !== msg.session) {
    for (const card of $("invites").children) card.remove();
    return;
  }
  closeCall();
  page.session = null;
  const outcome = msg.outcome ? t("outcome." + msg.outcome) : "";
  $("last-outcome").textContent = outcome ? t("console.ended", { outcome }) : msg.message || "";
  renderIdle();
  renderQueue();
}

function closeCall() {
  if (page.hangUp) { page.hangUp(); page.hangUp = null; }
  $("call-conn").hidden = true;
  $("recording").hidden = true;
}

$("end-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!page.session) return;
  const note = $("end-note").value.trim();
  $("end-button").disabled = true;
  try {
    await page.link.request({ type: "desk_end", session: page.session.session, outcome: $("outcome-select").value, ...(note && { note }) });
  } catch (err) { actionError(err); } finally { $("end-button").disabled = false; }
});

$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!page.session || !$("add-select").value) return;
  const chosen = $("add-select").value;
  const who = page.state?.agents.find((a) => a.identity === chosen)?.name || chosen;
  try {
    await page.link.request({ type: "desk_add", session: page.session.session, agent: $("add-select").value });
    $("add-result").textContent = t("console.added", { name: who });
  } catch (err) { $("add-result").textContent = t("console.failed", { reason: reasonText(err) }); }
});

$("interpreter-button").addEventListener("click", async () => {
  if (!page.session) return;
  try {
    const answer = await page.link.request({ type: "desk_add", session: page.session.session });
    const url = new URL(answer.link, location.origin).href;
    const field = el("input", { readOnly: true, value: url, className: "link-field" });
    field.setAttribute("aria-label", t("console.interpreter_link"));
    const copy = el("button", { type: "button", className: "secondary small", textContent: t("console.copy") });
    copy.addEventListener("click", () => { field.select(); navigator.clipboard?.writeText(url).catch(() => {}); });
    $("add-result").replaceChildren(el("span", { textContent: t("console.interpreter_link") }), field, copy);
  } catch (err) { $("add-result").textContent = t("console.failed", { reason: reasonText(err) }); }
});

$("transfer-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!page.session) return;
  const desk = $("transfer-desk").value.trim(), agent = $("transfer-agent").value, note = $("transfer-note").value.trim();
  try {
    await page.link.request({ type: "desk_transfer", session: page.session.session, ...(desk && { desk }), ...(agent && { agent }), ...(note && { note }) });
  } catch (err) { actionError(err); }
});

// -- start -----------------------------------------------------------------------------------

async function boot() {
  applyStrings();
  await loadLanguages();
  const params = new URLSearchParams(location.search);
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  const fromQuery = params.get("token");
  if (fromHash || fromQuery) {
    // the token leaves the address bar at once; it lives in this tab only
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    return signIn(fromHash || fromQuery);
  }
  const saved = sessionStorage.getItem(KEY);
  if (saved) return signIn(saved);
  landing();
}

boot();
