// What the desk pages (the visitor's page and the agent console) share: words, languages,
// durations, the connection pill, and the call (the call page, embedded in an iframe).
import { pickLanguage, translator } from "/static/strings.js";

export const UI = pickLanguage();
export const t = translator(UI);
export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...kids) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...kids.filter((k) => k !== null && k !== undefined && k !== false));
  return node;
}

export function applyStrings(root = document) {
  document.documentElement.lang = UI;
  for (const n of root.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
  for (const n of root.querySelectorAll("[data-i18n-label]")) n.setAttribute("aria-label", t(n.dataset.i18nLabel));
  for (const n of root.querySelectorAll("[data-i18n-placeholder]")) n.placeholder = t(n.dataset.i18nPlaceholder);
}

export function reasonText(reason) {
  if (!reason || !reason.code) return "";
  const key = "reason." + reason.code;
  const s = t(key);
  return s === key ? t("reason.unknown", { code: reason.code }) : s;
}

/** Show one of `screens` (section ids), hide the others; the body says which. */
export function show(screens, screen) {
  document.body.dataset.screen = screen;
  for (const id of screens) $(id).hidden = id !== screen;
}

export function showError(id, text) {
  $(id).textContent = text || "";
  $(id).hidden = !text;
}

// -- time ---------------------------------------------------------------------------------

export function waitText(seconds) {
  if (seconds === null || seconds === undefined) return t("wait.unknown");
  if (seconds < 60) return t("wait.soon");
  const n = Math.ceil(seconds / 60);
  return n < 60 ? t("wait.minutes", { n }) : t("wait.hours", { h: Math.floor(n / 60), m: n % 60 });
}

/** "3:07" waited since a Unix time (seconds). */
export function since(unix) {
  const s = Math.max(0, Math.floor(Date.now() / 1000 - unix));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

export function whenText(unix) {
  const d = new Date(unix * 1000);
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay ? { timeStyle: "short" } : { weekday: "long", day: "numeric", month: "long", hour: "numeric", minute: "2-digit" };
  return new Intl.DateTimeFormat(UI, opts).format(d);
}

// -- languages: the call page's pickers, shared -------------------------------------------------

export { base, browserLang, fillLangs, hasPair, langName, langs, loadLanguages, readNote, shortName, speakNote } from "/static/languages.js";

// -- the connection pill ----------------------------------------------------------------------

export function showState(pill, textNode, s, extra = "") {
  pill.dataset.state = s.state;
  let text = t("state." + s.state);
  if (s.state === "reconnecting" && s.retryIn) text = t("state.reconnecting_in", { s: Math.max(1, Math.round(s.retryIn / 1000)) });
  if (s.state !== "connected" && s.reason && !["disconnected", "left"].includes(s.reason.code)) text += " " + reasonText(s.reason);
  textNode.textContent = extra ? `${extra}: ${text}` : text;
}

// -- the call: the call page in an iframe, with a session's room token --------------------------

/** Put the call page for `token` into `holder`; `onEvent({kind, state?, reason?})` hears
 * its state, its end and its leave button. Returns a function that hangs up. */
export function openCall(holder, token, { cam = false, processing = true, onEvent = () => {} } = {}) {
  const q = new URLSearchParams({ embed: "1", autojoin: "1", mic: "1", cam: cam ? "1" : "0" });
  if (!processing) q.set("processing", "off");
  const frame = el("iframe", { id: "call-frame", src: `/?${q}#token=${encodeURIComponent(token)}`, title: t("session.call") });
  frame.allow = "microphone; camera; autoplay; display-capture";
  const listen = (e) => {
    if (e.origin !== location.origin || e.source !== frame.contentWindow) return;
    if (e.data && e.data.source === "commhub-call") onEvent(e.data);
  };
  window.addEventListener("message", listen);
  holder.replaceChildren(frame);
  return () => { window.removeEventListener("message", listen); frame.remove(); };
}

export const flags = new URLSearchParams(location.search);
export const PROCESSING = !(flags.get("processing") === "off" || flags.get("processing") === "0");
