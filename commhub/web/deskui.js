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

// -- languages (GET /v1/languages) -----------------------------------------------------------

export const langs = { languages: [], pairs: [], unknown: false };
const displayNames = (() => { try { return new Intl.DisplayNames([UI], { type: "language" }); } catch { return null; } })();
export const base = (code) => String(code || "").toLowerCase().split("-")[0];

export async function loadLanguages() {
  try {
    const r = await fetch("/v1/languages", { cache: "no-store" });
    if (!r.ok) throw new Error(String(r.status));
    const body = await r.json();
    Object.assign(langs, { languages: body.languages || [], pairs: body.pairs || [], unknown: false });
  } catch {
    Object.assign(langs, { languages: [{ code: "ko", captions: true }, { code: "en", captions: true }], pairs: [], unknown: true });
  }
}

export function shortName(code) { try { return (displayNames && displayNames.of(code)) || code; } catch { return code; } }

export function langName(code) {
  const entry = langs.languages.find((l) => l.code === code);
  const local = shortName(code);
  return entry?.native && entry.native !== local ? `${local} · ${entry.native}` : local;
}

export function hasPair(from, to) {
  if (base(from) === base(to)) return true;
  return langs.pairs.some((p) => base(p.from) === base(from) && base(p.to) === base(to));
}

export function browserLang(offered) {
  for (const l of navigator.languages || []) {
    const hit = offered.find((c) => base(c) === base(l));
    if (hit) return hit;
  }
  return offered[0] || "en";
}

/** Fill a language list: `first` codes on top; `note(code)` says what a choice lacks. */
export function fillLangs(select, chosen, note = () => "", first = []) {
  const codes = [...new Set([...first, ...langs.languages.map((l) => l.code)])];
  if (chosen && !codes.includes(chosen)) codes.push(chosen);
  select.replaceChildren(...codes.map((code) => {
    const why = note(code);
    const o = el("option", { value: code, textContent: langName(code) + (why ? ` (${why})` : "") });
    if (why) o.dataset.missing = why;
    return o;
  }));
  if (chosen) select.value = chosen;
}

export function speakNote(code) {
  const entry = langs.languages.find((l) => l.code === code);
  return entry && entry.captions === false ? t("lang.no_captions") : "";
}

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
