"""Language codes: everything inside commhub speaks ISO 639-1 ("en"); Apertium speaks 639-3."""

from __future__ import annotations

# Apertium pair names use ISO 639-3 (and a few 639-2/B) codes. Only languages that
# Apertium ships pairs for need to be here; unknown codes pass through unchanged.
_ISO3_TO_ISO1: dict[str, str] = {
    "afr": "af", "ara": "ar", "arg": "an", "ast": "ast", "bel": "be", "bre": "br",
    "bul": "bg", "cat": "ca", "ces": "cs", "cym": "cy", "dan": "da", "deu": "de",
    "ell": "el", "eng": "en", "epo": "eo", "est": "et", "eus": "eu", "fao": "fo",
    "fin": "fi", "fra": "fr", "gla": "gd", "gle": "ga", "glg": "gl", "heb": "he",
    "hin": "hi", "hrv": "hr", "hun": "hu", "isl": "is", "ita": "it", "kaz": "kk",
    "kor": "ko", "jpn": "ja", "lav": "lv", "lit": "lt", "mkd": "mk", "mlt": "mt",
    "nld": "nl", "nno": "nn", "nob": "nb", "oci": "oc", "pol": "pl", "por": "pt",
    "ron": "ro", "rus": "ru", "slk": "sk", "slv": "sl", "spa": "es", "sqi": "sq",
    "srd": "sc", "swe": "sv", "tat": "tt", "tur": "tr", "ukr": "uk", "urd": "ur",
    "zho": "zh", "hbs": "sh", "ind": "id", "msa": "ms", "kir": "ky", "uzb": "uz",
}  # fmt: skip
_ISO1_TO_ISO3: dict[str, str] = {v: k for k, v in _ISO3_TO_ISO1.items()}


def to_iso1(code: str) -> str:
    """ "eng" -> "en"; "en-US"/"pt_BR" -> "en"/"pt"; unknown codes lower-cased as they are."""
    base = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return _ISO3_TO_ISO1.get(base, base)


def to_iso3(code: str) -> str:
    """ "en" -> "eng"; codes that are already 639-3 (or unknown) come back unchanged."""
    base = to_iso1(code)
    return _ISO1_TO_ISO3.get(base, base)
