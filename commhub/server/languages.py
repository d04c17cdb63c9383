"""GET /v1/languages: what this hub can caption and translate, for a pre-join language picker.

No token: a join page shows the list before anyone has one. The answer is built from what is
installed (speech models on disk or in packages, the translation router's pairs), so it
follows `commhub models install` after a restart, and it is cached for a few seconds because
finding the speech models scans directories (done in a thread, off the event loop).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from commhub.server.keys import HUB
from commhub.speech import SpeechModels
from commhub.translate import TranslationService

CACHE_SECONDS = 5.0
ALWAYS = ("ko", "en")  # the hub's two first-class languages are listed even without models

# ISO 639-1 code -> (English name, name in the language itself). Codes missing here are
# listed with the code as their name.
NAMES: dict[str, tuple[str, str]] = {
    "af": ("Afrikaans", "Afrikaans"), "an": ("Aragonese", "aragonés"),
    "ar": ("Arabic", "العربية"), "ast": ("Asturian", "asturianu"),
    "be": ("Belarusian", "беларуская"), "bg": ("Bulgarian", "български"),
    "bn": ("Bengali", "বাংলা"), "br": ("Breton", "brezhoneg"), "ca": ("Catalan", "català"),
    "cs": ("Czech", "čeština"), "cy": ("Welsh", "Cymraeg"), "da": ("Danish", "dansk"),
    "de": ("German", "Deutsch"), "el": ("Greek", "Ελληνικά"), "en": ("English", "English"),
    "eo": ("Esperanto", "Esperanto"), "es": ("Spanish", "español"),
    "et": ("Estonian", "eesti"), "eu": ("Basque", "euskara"), "fa": ("Persian", "فارسی"),
    "fi": ("Finnish", "suomi"), "fo": ("Faroese", "føroyskt"), "fr": ("French", "français"),
    "ga": ("Irish", "Gaeilge"), "gd": ("Scottish Gaelic", "Gàidhlig"),
    "gl": ("Galician", "galego"), "he": ("Hebrew", "עברית"), "hi": ("Hindi", "हिन्दी"),
    "hr": ("Croatian", "hrvatski"), "hu": ("Hungarian", "magyar"),
    "id": ("Indonesian", "Bahasa Indonesia"), "is": ("Icelandic", "íslenska"),
    "it": ("Italian", "italiano"), "ja": ("Japanese", "日本語"), "kk": ("Kazakh", "қазақ"),
    "ko": ("Korean", "한국어"), "ky": ("Kyrgyz", "кыргызча"), "lt": ("Lithuanian", "lietuvių"),
    "lv": ("Latvian", "latviešu"), "mk": ("Macedonian", "македонски"),
    "ms": ("Malay", "Bahasa Melayu"), "mt": ("Maltese", "Malti"),
    "nb": ("Norwegian Bokmål", "norsk bokmål"), "nl": ("Dutch", "Nederlands"),
    "nn": ("Norwegian Nynorsk", "norsk nynorsk"), "oc": ("Occitan", "occitan"),
    "pl": ("Polish", "polski"), "pt": ("Portuguese", "português"),
    "ro": ("Romanian", "română"), "ru": ("Russian", "русский"), "sc": ("Sardinian", "sardu"),
    "sh": ("Serbo-Croatian", "srpskohrvatski"), "sk": ("Slovak", "slovenčina"),
    "sl": ("Slovenian", "slovenščina"), "sq": ("Albanian", "shqip"),
    "sv": ("Swedish", "svenska"), "th": ("Thai", "ไทย"), "tl": ("Tagalog", "Tagalog"),
    "tr": ("Turkish", "Türkçe"), "tt": ("Tatar", "татар"), "uk": ("Ukrainian", "українська"),
    "ur": ("Urdu", "اردو"), "uz": ("Uzbek", "oʻzbek"), "vi": ("Vietnamese", "Tiếng Việt"),
    "zh": ("Chinese", "中文"),
}  # fmt: skip

_CACHE = web.AppKey("languages_cache", dict)


def _base(code: str) -> str:
    return code.strip().lower().replace("_", "-").split("-", 1)[0]


def describe(
    speech: dict[str, str], pairs: dict[tuple[str, str], str], captions: bool
) -> dict[str, Any]:
    """The wire answer from the installed speech engines (language -> engine) and the
    served translation pairs ((from, to) -> engine label, pivots included)."""
    engines: dict[str, str] = {}
    for lang, used in sorted(speech.items()):
        engines.setdefault(_base(lang), used)  # "en-us" serves "en"; first one wins
    codes = set(ALWAYS) | set(engines) | {c for pair in pairs for c in pair}
    languages = []

    def order(c: str) -> tuple[int, str]:  # ko, en first, then by English name
        return (ALWAYS.index(c) if c in ALWAYS else len(ALWAYS), NAMES.get(c, (c,))[0])

    for code in sorted(codes, key=order):
        name, native = NAMES.get(code, (code, code))
        engine: str | None = engines.get(code) if captions else None
        languages.append(
            {
                "code": code,
                "name": name,
                "native": native,
                "captions": engine is not None,
                "speech_engine": engine,
            }
        )
    return {
        "languages": languages,
        "pairs": [{"from": s, "to": t, "engine": e} for (s, t), e in sorted(pairs.items())],
    }


async def languages(request: web.Request) -> web.Response:
    app = request.app
    cache = app[_CACHE]
    now = time.monotonic()
    if cache.get("until", 0.0) < now:
        hub = app[HUB]
        s = hub.settings
        speech: dict[str, str] = {}
        if s.captions:
            models = SpeechModels(s.models_dir, s.speech_engines)
            speech = await asyncio.to_thread(models.languages)
        translator = hub.translator
        pairs = translator.matrix() if isinstance(translator, TranslationService) else {}
        cache["body"] = describe(speech, pairs, s.captions)
        cache["until"] = now + CACHE_SECONDS
    return web.json_response(cache["body"], headers={"Cache-Control": "max-age=5"})


def setup(app: web.Application) -> None:
    app[_CACHE] = {}
    app.router.add_get("/v1/languages", languages)
