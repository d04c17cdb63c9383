// The hub's languages (GET /v1/languages) for the pages' language pickers: names in the
// interface language (and in the language itself), and what a choice lacks (captions,
// a translation) said before it is made. Shared by the call page and the desk pages.
import { pickLanguage, translator } from "/static/strings.js";

const UI = pickLanguage();
const t = translator(UI);
export const langs = { languages: [], pairs: [], loaded: false, unknown: false };
const displayNames = (() => { try { return new Intl.DisplayNames([UI], { type: "language" }); } catch { return null; } })();
export const base = (code) => String(code || "").toLowerCase().split("-")[0];

export async function loadLanguages() {
  if (langs.loaded) return;
  try {
    const r = await fetch("/v1/languages", { cache: "no-store" });
    if (!r.ok) throw new Error(String(r.status));
    const body = await r.json();
    Object.assign(langs, { languages: body.languages || [], pairs: body.pairs || [], loaded: true, unknown: false });
  } catch {
    // an older hub: offer the two languages every hub speaks, marked as unknown
    Object.assign(langs, { languages: [{ code: "ko", captions: true }, { code: "en", captions: true }], pairs: [], loaded: true, unknown: true });
  }
}

export function shortName(code) { try { return (displayNames && displayNames.of(code)) || code; } catch { return code; } }

export function langName(code) {
  const entry = langs.languages.find((l) => l.code === code);
  let local = code;
  try { local = (displayNames && displayNames.of(code)) || entry?.name || code; } catch { local = entry?.name || code; }
  const native = entry?.native;
  return native && native !== local ? `${local} · ${native}` : local;
}

export function hasPair(from, to) {
  if (base(from) === base(to)) return true;
  return langs.pairs.some((p) => base(p.from) === base(from) && base(p.to) === base(to));
}

/** The first of the browser's languages among `offered` (default: the hub's). */
export function browserLang(offered = langs.languages.map((l) => l.code)) {
  for (const l of navigator.languages || []) {
    const hit = offered.find((c) => base(c) === base(l));
    if (hit) return hit;
  }
  return offered[0] || "en";
}

/** Fill a language list, `first` codes on top; `note(code)` says what a choice lacks. */
export function fillLangs(select, chosen, note = () => "", first = []) {
  const codes = [...new Set([...first, ...langs.languages.map((l) => l.code)])];
  if (chosen && !codes.includes(chosen)) codes.push(chosen);
  select.replaceChildren(...codes.map((code) => {
    const why = note(code);
    const o = document.createElement("option");
    o.value = code;
    o.textContent = langName(code) + (why ? ` (${why})` : "");
    if (why) o.dataset.missing = why;
    return o;
  }));
  if (chosen) select.value = chosen;
}

export function speakNote(code) {
  const entry = langs.languages.find((l) => l.code === code);
  return entry && entry.captions === false ? t("lang.no_captions") : "";
}

/** A read language is marked when what the others (or, before joining, I) speak cannot reach it. */
export function readNote(code, speakers) {
  const missing = speakers.filter((s) => !hasPair(s, code));
  if (!missing.length || langs.unknown) return "";
  return t("lang.no_translation", { lang: missing.map(shortName).join(", ") });
}
