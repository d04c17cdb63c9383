"""GET /v1/languages over real HTTP: built from the engines installed on this machine (the
packaged Korean Vosk model, pocketsphinx's English, Debian's Apertium en<->es, Argos
packages a test installs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from commhub.server.languages import describe
from commhub.translate import install_argos_package
from tests.conftest import Running, StartHub
from tests.helpers import translate as translate_helpers

argos_archives = translate_helpers.argos_archives  # the session fixture, used by name


async def get(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/languages") as resp:
        assert resp.status == 200
        return dict(await resp.json())


def by_code(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    codes = [lang["code"] for lang in body["languages"]]
    assert len(codes) == len(set(codes)), codes
    return {lang["code"]: lang for lang in body["languages"]}


async def test_default_engines_are_listed(hub: Running) -> None:
    body = await get(hub.url)  # no token needed
    langs = by_code(body)
    assert langs["ko"] == {"code": "ko", "name": "Korean", "native": "한국어",
                           "captions": True, "speech_engine": "vosk"}  # fmt: skip
    assert langs["en"]["captions"] is True and langs["en"]["speech_engine"] == "pocketsphinx"
    # Spanish: readable through Apertium, no speech model
    assert langs["es"] == {"code": "es", "name": "Spanish", "native": "español",
                           "captions": False, "speech_engine": None}  # fmt: skip
    pairs = {(p["from"], p["to"]): p["engine"] for p in body["pairs"]}
    assert pairs[("en", "es")] == pairs[("es", "en")] == "apertium"
    assert ("ko", "en") not in pairs  # nothing translates Korean here
    assert {c for pair in pairs for c in pair} <= set(langs)
    assert [lang["code"] for lang in body["languages"]][:2] == ["ko", "en"]


async def test_without_captions_or_translation(start_hub: StartHub) -> None:
    hub = await start_hub(captions=False, translation=False)
    body = await get(hub.url)
    assert body["pairs"] == []
    assert [(lang["code"], lang["captions"]) for lang in body["languages"]] == [
        ("ko", False),
        ("en", False),
    ]


async def test_an_installed_argos_pair_appears_with_its_pivots(
    start_hub: StartHub, tmp_path: Path, argos_archives: dict[str, Path]
) -> None:
    models = tmp_path / "models"
    install_argos_package(argos_archives["xx-en"], models, progress=False)
    hub = await start_hub(models_dir=models)
    body = await get(hub.url)
    pairs = {(p["from"], p["to"]): p["engine"] for p in body["pairs"]}
    assert pairs[("xx", "en")] == "argos"
    assert pairs[("xx", "es")] == "argos+apertium via en"  # two legs through English
    langs = by_code(body)
    assert langs["xx"] == {"code": "xx", "name": "xx", "native": "xx",
                           "captions": False, "speech_engine": None}  # fmt: skip


@pytest.mark.parametrize(
    ("speech", "expect"),
    [
        ({"en-us": "vosk"}, {"en": "vosk"}),  # a regional model serves its language
        ({"de": "vosk"}, {"de": "vosk"}),
    ],
)
def test_describe_regional_models(speech: dict[str, str], expect: dict[str, str]) -> None:
    body = describe(speech, {}, captions=True)
    engines = {lang["code"]: lang["speech_engine"] for lang in body["languages"]}
    for code, engine in expect.items():
        assert engines[code] == engine
    assert engines["ko"] is None  # always listed, even without a model
