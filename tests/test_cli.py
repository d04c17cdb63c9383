"""The command line as a user runs it: models, translate, transcribe (real engines)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from commhub import cli
from tests.conftest import run_cli
from tests.helpers.audio import librivox, word_errors


def commhub(
    *args: str, stdin: str | None = None, models: Path | None = None
) -> subprocess.CompletedProcess[str]:
    extra = ["--models-dir", str(models)] if models else []
    return run_cli(*args, *extra, stdin=stdin)


def test_models_list_shows_engines_and_pairs(tmp_path: Path) -> None:
    proc = commhub("models", "list", models=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ko: vosk" in proc.stdout
    assert "en: pocketsphinx" in proc.stdout
    assert "argos: available, no pairs installed yet" in proc.stdout
    assert "en -> es: apertium" in proc.stdout


def test_translate_argument_and_stdin(tmp_path: Path) -> None:
    proc = commhub(
        "translate", "--from", "en", "--to", "es", "Where is the city hall?", models=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Dónde es la sala de ciudad?"
    piped = commhub("translate", "--from", "en", "--to", "es", stdin="Thank you\n", models=tmp_path)
    assert piped.returncode == 0 and piped.stdout.strip() == "Gracias"


def test_translate_unavailable_pair_says_what_is_installed(tmp_path: Path) -> None:
    proc = commhub("translate", "--from", "en", "--to", "ko", "hello", models=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no en->ko" in proc.stderr and "en->es (apertium)" in proc.stderr


def test_install_errors_are_clear(tmp_path: Path) -> None:
    proc = commhub(
        "models", "install", "vosk:/no/such/model.zip", "--language", "de", models=tmp_path
    )
    assert proc.returncode == 1 and "no such file" in proc.stderr
    proc = commhub("models", "install", "klingon", models=tmp_path)
    assert proc.returncode == 1 and "no model 'klingon'" in proc.stderr
    assert not any(tmp_path.rglob("*"))  # nothing half-written


def test_transcribe_writes_transcript_to_stdout_progress_to_stderr(tmp_path: Path) -> None:
    wav, reference = librivox()[0]
    proc = commhub("transcribe", str(wav), "--lang", "en", "--format", "txt", models=tmp_path)
    assert proc.returncode == 0, proc.stderr
    errors, words = word_errors(reference, proc.stdout)
    assert errors / words <= 0.5, (reference, proc.stdout)
    assert "%" in proc.stderr  # the progress bar went to stderr, not into the transcript
    out = tmp_path / "t.vtt"
    proc = commhub("transcribe", str(wav), "--lang", "en", "--format", "vtt", "-o", str(out),
                   "--no-progress", models=tmp_path)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == ""
    assert out.read_text().startswith("WEBVTT") and "-->" in out.read_text()


def test_transcribe_unknown_language_says_how_to_fix(tmp_path: Path) -> None:
    wav, _ = librivox()[0]
    proc = commhub("transcribe", str(wav), "--lang", "sw", models=tmp_path)
    assert proc.returncode == 1
    assert "commhub models install" in proc.stderr


def _commands(p: argparse.ArgumentParser, name: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its words, e.g. "reports list"."""
    found = {name: p}
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, child in action.choices.items():
                found.update(_commands(child, f"{name} {word}".strip()))
    return found


def test_one_flag_names_the_hubs_address() -> None:
    commands = _commands(cli.parser())
    calls_the_hub = ["transcript", "erase", "reports list", "reports show", "reports resolve",
                     "bans list", "bans add", "bans lift", "invite"]  # fmt: skip
    for words in calls_the_hub:
        flags = {f for a in commands[words]._actions for f in a.option_strings}
        assert "--base-url" in flags, words
    for words, p in commands.items():
        assert "--url" not in p.format_help(), f"commhub {words} --help shows --url"
    # the earlier name of transcript's and erase's flag still works, as --base-url
    args = cli.parser().parse_args(["transcript", "desk", "--url", "http://127.0.0.1:9"])
    assert args.base_url == "http://127.0.0.1:9"
    args = cli.parser().parse_args(["erase", "alice", "--base-url", "http://127.0.0.1:9"])
    assert args.base_url == "http://127.0.0.1:9"
