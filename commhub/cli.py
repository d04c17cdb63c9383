"""The `commhub` command: serve, token, invite, models, transcribe, translate, transcript,
erase."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from commhub import auth, catalog, installers
from commhub.app import create_app
from commhub.captions.transcribe import transcribe_file
from commhub.cluster import ClusterError
from commhub.config import Settings, SettingsError
from commhub.download import InstallError
from commhub.hub import Hub
from commhub.moderation import reports_cli
from commhub.server import invites
from commhub.server.accesslog import AccessLog
from commhub.server.keys import HUB
from commhub.speech import ModelNotFound, SpeechModels
from commhub.store import StoreUnreachable, export
from commhub.translate import (
    TranslationError,
    TranslationService,
    build_engines,
    translate_cli,
)

log = logging.getLogger("commhub")
UNREACHABLE = 3  # exit code: a service the hub needs (Redis, the database) cannot be reached


def duration(text: str) -> float:
    """'90', '90s', '15m', '6h', '2d' -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 90s, 15m, 6h, 2d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where secrets and databases live (COMMHUB_DATA_DIR)")
    p.add_argument("--models-dir", help="installed models (COMMHUB_MODELS_DIR)")


def _api_args(p: argparse.ArgumentParser) -> None:
    _settings_args(p)
    p.add_argument(
        "--base-url", help="the hub's address (default: http://COMMHUB_HOST:COMMHUB_PORT)"
    )
    # the flag's earlier name, still accepted: one name for the hub's address in every command
    p.add_argument("--url", dest="base_url", help=argparse.SUPPRESS)
    p.add_argument("--token", help="an access token (default: COMMHUB_TOKEN, else minted)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="commhub", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the hub")
    _settings_args(serve)
    serve.add_argument("--host", help="listen address (COMMHUB_HOST, default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="listen port, 0 = any free (COMMHUB_PORT, default 8080)"
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--demo-room",
        metavar="ROOM",
        help="mint a multi-use invite to ROOM at start and print its join link",
    )

    token = sub.add_parser("token", help="print an access token")
    _settings_args(token)
    token.add_argument("--room", help="room name, or '*' with --admin (or --desk)")
    token.add_argument("--identity", required=True, help="stable user id (JWT sub)")
    token.add_argument("--name", help="display name")
    token.add_argument("--role", default="guest", choices=auth.ROLES)
    token.add_argument("--speak", default="en", help="spoken language, e.g. ko")
    token.add_argument("--read", help="language to read captions and chat in (default: --speak)")
    token.add_argument(
        "--grant",
        action="append",
        choices=auth.GRANTS,
        help="grant (repeatable); default: publish, subscribe, chat",
    )
    token.add_argument("--ttl", type=duration, default=6 * 3600.0, help="lifetime, e.g. 6h")
    token.add_argument("--admin", action="store_true", help="add the admin grant")
    token.add_argument(
        "--media-mode", choices=["sfu", "p2p", "auto"], help="set the room's media mode on join"
    )
    token.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set whether the room records its transcript, on join",
    )
    token.add_argument("--desk", help="a desk token for this desk (with --agent)")
    token.add_argument("--agent", action="store_true", help="an agent of --desk")
    token.add_argument("--languages", help="an agent's languages, e.g. ko,en (default: --speak)")

    inv = sub.add_parser(
        "invite",
        help="print a join link (an invite) for a room",
        description="Mint an invite and print its join URL. Works while the hub runs: "
        "invites live in the hub's database (the same --data-dir or COMMHUB_DATABASE_URL "
        "as `serve`).",
    )
    _settings_args(inv)
    inv.add_argument("--room", required=True, help="room name")
    inv.add_argument("--ttl", type=duration, default=86400.0, help="valid for, e.g. 1h (1d)")
    inv.add_argument("--uses", type=int, help="how many people may join with it (unlimited)")
    inv.add_argument("--role", default="guest", choices=[r for r in auth.ROLES if r != "admin"])
    inv.add_argument(
        "--grant",
        action="append",
        choices=[g for g in auth.GRANTS if g != "admin"],
        help="grant (repeatable); default: publish, subscribe, chat",
    )
    inv.add_argument("--media-mode", choices=["sfu", "p2p", "auto"], help="the room's media mode")
    inv.add_argument(
        "--base-url", help="the hub's public address (default: http://COMMHUB_HOST:COMMHUB_PORT)"
    )

    _desk_parser(sub)

    models = sub.add_parser("models", help="list or install speech and translation models")
    msub = models.add_subparsers(dest="models_command", required=True)
    mlist = msub.add_parser("list", help="installed models and the translation pair matrix")
    _settings_args(mlist)
    minstall = msub.add_parser(
        "install",
        help="install a model",
        description="SPEC is a catalog id or language (ko, en), vosk:<zip path or URL>, "
        "argos:<.argosmodel path or URL>, argos:<from>-<to> (Argos index, online), "
        "apertium:<pair> (Debian package, e.g. eng-spa), or 'defaults' (the offline defaults)",
    )
    _settings_args(minstall)
    minstall.add_argument("spec")
    minstall.add_argument("--language", help="language of a vosk: archive (else from its name)")
    minstall.add_argument("--sha256", help="expected checksum of a vosk: archive")
    minstall.add_argument("--force", action="store_true", help="replace an installed model")

    tr = sub.add_parser("transcribe", help="transcribe an audio or video file")
    _settings_args(tr)
    tr.add_argument("file")
    tr.add_argument("--lang", "--language", dest="lang", required=True, help="spoken language")
    tr.add_argument("--format", default="txt", choices=["txt", "vtt", "srt", "json"])
    tr.add_argument("-o", "--output", help="write here instead of stdout")
    tr.add_argument("--phrases", help="restrict recognition to these words (comma separated)")
    tr.add_argument(
        "--decoder",
        default="default",
        choices=["default", "fast"],
        help="decoder preset: fast takes less CPU, maybe at some accuracy (README, performance)",
    )
    tr.add_argument("--no-progress", action="store_true")

    # -- transcripts and erasure (the hub's HTTP API) --
    ts = sub.add_parser(
        "transcript",
        help="download a room's stored transcript from the running hub",
        description="Calls GET /v1/rooms/ROOM/transcript. The token is --token, else "
        "COMMHUB_TOKEN, else a one-minute admin token for ROOM signed with this data dir's "
        "secret (the hub's own, when run beside it).",
    )
    _api_args(ts)
    ts.add_argument("room")
    ts.add_argument("--format", default="vtt", choices=list(export.FORMATS))
    ts.add_argument("--lang", help="show each line in this language where it was translated")
    ts.add_argument("--bilingual", action="store_true", help="the original and --lang together")
    ts.add_argument("-o", "--output", help="write here instead of stdout")
    er = sub.add_parser(
        "erase",
        help="erase everything the hub stored about one identity (chat, captions, reports, "
        "evidence)",
        description="Calls DELETE /v1/identities/IDENTITY and prints what was removed.",
    )
    _api_args(er)
    er.add_argument("identity")

    tl = sub.add_parser("translate", help="translate text (argument or stdin)")
    _settings_args(tl)
    tl.add_argument("--from", dest="source", required=True)
    tl.add_argument("--to", dest="target", required=True)
    tl.add_argument("text", nargs="?", help="text to translate (default: stdin)")

    # -- moderation: text --
    mod = sub.add_parser("moderation", help="try the text filters")
    modsub = mod.add_subparsers(dest="moderation_command", required=True)
    check = modsub.add_parser(
        "check", help="print a line as readers get it (exit 3 when something was caught)"
    )
    check.add_argument("--lang", required=True, help="the language the line is in (ko, en...)")
    check.add_argument("--wordlist", help="a hub list file (default: COMMHUB_MODERATION_WORDLIST)")
    check.add_argument("text", nargs="?", help="the line (default: stdin)")

    # -- reports and moderator actions --
    reports_cli.add_parsers(sub, _settings_args, duration)
    return top


def _load(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "data_dir": getattr(args, "data_dir", None),
        "models_dir": getattr(args, "models_dir", None),
        **extra,
    }
    return Settings.load(overrides)


def command_name() -> str:
    """How the user ran us (e.g. .venv/bin/commhub), for hints they can paste."""
    return os.path.relpath(sys.argv[0]) if sys.argv[0].endswith("commhub") else "commhub"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = _load(args, host=args.host, port=args.port, log_level=args.log_level)
            if args.demo_room and not auth.valid_room_name(args.demo_room):
                print(f"commhub serve: invalid room name {args.demo_room!r}", file=sys.stderr)
                return 2
            return asyncio.run(serve(settings, args.demo_room, explicit_data_dir(args)))
        if args.command == "token":
            return token(args, _load(args))
        if args.command == "invite":
            return invite(args, _load(args))
        if args.command == "transcript":
            return transcript(args, _load(args))
        if args.command == "erase":
            return erase(args, _load(args))
        if args.command == "desk":
            return desk_command(args, _load(args))
        settings = _load(args)
        if args.command in reports_cli.COMMANDS:
            return reports_cli.run(args, settings, base_url(settings))
        if args.command == "models":
            if args.models_command == "list":
                return models_list(settings)
            return models_install(args, settings)
        if args.command == "transcribe":
            return transcribe(args, settings)
        if args.command == "translate":
            return translate(args, settings)
        if args.command == "moderation":
            from commhub.moderation.cli import check_cli

            text = args.text if args.text is not None else sys.stdin.read()
            return check_cli(text.strip(), args.lang, settings, args.wordlist)
    except SettingsError as exc:
        print(f"commhub: {exc}", file=sys.stderr)
        return 2
    except (InstallError, ModelNotFound, TranslationError) as exc:
        print(f"commhub {args.command}: {exc}", file=sys.stderr)
        return 1
    except StoreUnreachable as exc:  # `commhub desk ...`, `invite` against a database away
        print(f"commhub {args.command}: {exc}", file=sys.stderr)
        return UNREACHABLE
    return 1


def models_list(settings: Settings) -> int:
    installed = catalog.list_installed(settings.models_dir)
    speech = SpeechModels(settings.models_dir, settings.speech_engines).languages()
    print("speech recognition (language: engine in use; installed models)")
    for lang in sorted({m.language for m in installed}):
        here = [m for m in installed if m.language == lang]
        names = ", ".join(f"{m.engine}:{m.id} ({m.source})" for m in here)
        print(f"  {lang}: {speech.get(lang, 'unusable')}; {names}")
    service = TranslationService(build_engines(settings.models_dir), cache_size=0)
    try:
        print("translation engines")
        for name, engine in sorted(service.engines.items()):
            pairs = engine.pairs()
            state = f"{len(pairs)} pair(s)" if pairs else "available, no pairs installed yet"
            print(f"  {name}: {state}")
        print("translation pairs (from -> to: engine)")
        matrix = service.matrix()
        for (src, dst), route in sorted(matrix.items()):
            print(f"  {src} -> {dst}: {route}")
        if not matrix:
            print("  none: commhub models install apertium:eng-spa | argos:<file.argosmodel>")
    finally:
        asyncio.run(service.aclose())
    return 0


def models_install(args: argparse.Namespace, settings: Settings) -> int:
    for line in installers.install_spec(
        args.spec, settings.models_dir, language=args.language, sha256=args.sha256,
        force=args.force,
    ):  # fmt: skip
        print(line)
    return 0


def transcribe(args: argparse.Namespace, settings: Settings) -> int:
    models = SpeechModels(settings.models_dir, settings.speech_engines)
    phrases = [p.strip() for p in args.phrases.split(",")] if args.phrases else None
    with contextlib.ExitStack() as stack:
        out = (
            stack.enter_context(open(args.output, "w", encoding="utf-8"))
            if args.output
            else sys.stdout
        )
        transcribe_file(args.file, args.lang, models, args.format, out,
                        not args.no_progress, phrases, args.decoder)  # fmt: skip
    return 0


def translate(args: argparse.Namespace, settings: Settings) -> int:
    text = args.text if args.text is not None else sys.stdin.read()
    if not text.strip():
        print("commhub translate: no text (give it as an argument or on stdin)", file=sys.stderr)
        return 2
    print(asyncio.run(translate_cli(text.strip(), args.source, args.target, settings.models_dir)))
    return 0


def token(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.desk) != bool(args.agent) or bool(args.room) == bool(args.desk):
        print("commhub token: give --room, or --desk D --agent", file=sys.stderr)
        return 2
    secret, created = settings.resolve_secret()
    if created:
        print(
            f"commhub: generated a development secret in {settings.data_dir}/secret",
            file=sys.stderr,
        )
    if args.desk:
        return desk_agent_token(args, settings, secret)
    grants = list(args.grant or auth.DEFAULT_GRANTS) + (["admin"] if args.admin else [])
    try:
        print(
            auth.issue(
                secret,
                room=args.room,
                identity=args.identity,
                name=args.name,
                role=args.role,
                grants=grants,
                speak=args.speak,
                read=args.read,
                ttl=args.ttl,
                issuer=settings.issuer,
                media_mode=args.media_mode,
                record=args.record,
            )
        )
    except ValueError as exc:
        print(f"commhub token: {exc}", file=sys.stderr)
        return 2
    return 0


def explicit_data_dir(args: argparse.Namespace) -> str | None:
    """The data dir the user named (flag or environment), for hints that must reuse it."""
    return getattr(args, "data_dir", None) or os.environ.get("COMMHUB_DATA_DIR") or None


def base_url(settings: Settings) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def invite(args: argparse.Namespace, settings: Settings) -> int:
    spec: dict[str, Any] = {"room": args.room, "ttl": args.ttl, "role": args.role}
    if args.uses is not None:
        spec["uses"] = args.uses
    if args.grant:
        spec["grants"] = args.grant
    if args.media_mode:
        spec["media_mode"] = args.media_mode
    try:
        checked = invites.validate(spec, settings.admin_token_max_ttl)
    except invites.InviteError as exc:
        print(f"commhub invite: {exc.message}", file=sys.stderr)
        return 2
    try:  # the hub's database (database_url, else the data dir's): every node sees it
        made = asyncio.run(invites.mint(settings.database_url, settings.data_dir, checked))
    except invites.InviteError as exc:
        print(f"commhub invite: {exc.message}", file=sys.stderr)
        return 1
    uses = "unlimited uses" if made.uses is None else f"{made.uses} use(s)"
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(made.expires_at))
    print(f"invite to room {made.room}: {uses}, valid until {until}", file=sys.stderr)
    print(f"{(args.base_url or base_url(settings)).rstrip('/')}/join/{made.code}")
    return 0


class NoToken(Exception):
    """Nothing to authorise an API call with."""


def api_call(
    args: argparse.Namespace, settings: Settings, method: str, path: str, room: str
) -> tuple[int, bytes, str]:
    """(status, body, content type) of one call to the running hub's HTTP API; the token
    is --token, COMMHUB_TOKEN, or a one-minute admin token for `room` from the secret."""
    bearer = args.token or os.environ.get("COMMHUB_TOKEN")
    if not bearer:
        if not settings.secret and not (settings.data_dir / "secret").exists():
            raise NoToken(
                f"no token: pass --token or COMMHUB_TOKEN, or --data-dir of the hub "
                f"(no secret in {settings.data_dir})"
            )
        secret, _ = settings.resolve_secret()
        bearer = auth.issue(
            secret, room=room, identity="cli", grants=["admin"], ttl=60, issuer=settings.issuer
        )
    url = (args.base_url or base_url(settings)).rstrip("/") + path
    request = urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {bearer}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get_content_type()


def api_refusal(command: str, status: int, body: bytes) -> int:
    """Print the hub's refusal ({"error", "message"}) as one line; exit status 1."""
    try:
        doc = json.loads(body)
        why = f"{doc['error']}: {doc['message']}"
    except (ValueError, KeyError, TypeError):
        why = body.decode("utf-8", "replace")[:200] or "no reason given"
    print(f"commhub {command}: HTTP {status}: {why}", file=sys.stderr)
    return 1


def transcript(args: argparse.Namespace, settings: Settings) -> int:
    if not auth.valid_room_name(args.room):
        print(f"commhub transcript: invalid room name {args.room!r}", file=sys.stderr)
        return 2
    query = {"format": args.format}
    if args.lang:
        query["lang"] = args.lang
    if args.bilingual:
        query["bilingual"] = "1"
    path = f"/v1/rooms/{args.room}/transcript?{urllib.parse.urlencode(query)}"
    try:
        status, body, _ = api_call(args, settings, "GET", path, args.room)
    except NoToken as exc:
        print(f"commhub transcript: {exc}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as exc:
        return _unreachable("transcript", args, settings, exc)
    if status != 200:
        return api_refusal("transcript", status, body)
    if args.output:
        with open(args.output, "wb") as out:
            out.write(body)
    else:
        sys.stdout.write(body.decode("utf-8"))
        sys.stdout.flush()
    return 0


def erase(args: argparse.Namespace, settings: Settings) -> int:
    path = f"/v1/identities/{urllib.parse.quote(args.identity, safe='')}"
    try:
        status, body, _ = api_call(args, settings, "DELETE", path, auth.ANY_ROOM)
    except NoToken as exc:
        print(f"commhub erase: {exc}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as exc:
        return _unreachable("erase", args, settings, exc)
    if status != 200:
        return api_refusal("erase", status, body)
    counts = json.loads(body)["erased"]
    total = sum(counts.values())
    print(f"erased {total} item(s) stored about {args.identity!r}", file=sys.stderr)
    for kind, n in sorted(counts.items()):
        print(f"{kind}\t{n}")
    return 0


def _unreachable(command: str, args: argparse.Namespace, settings: Settings, exc: Exception) -> int:
    where = args.base_url or base_url(settings)
    reason = getattr(exc, "reason", exc)
    print(f"commhub {command}: cannot reach the hub at {where}: {reason}", file=sys.stderr)
    return 1


async def serve(
    settings: Settings, demo_room: str | None = None, data_dir: str | None = None
) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secret, created = settings.resolve_secret()
    if created:
        log.warning(
            "no COMMHUB_SECRET set: generated a development secret in %s/secret", settings.data_dir
        )
    app = create_app(settings, secret)
    runner = web.AppRunner(
        app,
        shutdown_timeout=settings.shutdown_timeout,
        handle_signals=False,
        access_log_class=AccessLog,
    )
    try:
        await runner.setup()
    except (ClusterError, StoreUnreachable) as exc:  # a service it needs: one line, no traceback
        print(f"commhub serve: {exc}", file=sys.stderr, flush=True)
        await runner.cleanup()  # what started before it (sessions, engines) closes cleanly
        return UNREACHABLE
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = runner.addresses[0][1]
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"commhub listening on http://{host}:{port}", flush=True)
    if demo_room:
        store = app[invites.INVITES]
        spec = invites.validate({"room": demo_room}, settings.admin_token_max_ttl)
        demo = await store.create(spec)
        link = base_url(settings.replace(port=port)) + demo.url  # the port bound, even 0
        print(f"join the demo room {demo_room!r} (open in two tabs to call yourself): {link}",
              flush=True)  # fmt: skip
    # the hints must reach the same secret: the same data dir, or the same COMMHUB_SECRET
    where = f" --data-dir {shlex.quote(data_dir)}" if data_dir else ""
    same = " (with the same COMMHUB_SECRET)" if settings.secret else ""
    cmd = command_name()
    print(
        f"get a token{same}: {cmd} token{where} --room lobby --identity alice --speak ko --read en",
        flush=True,
    )
    actual = base_url(settings.replace(port=port))
    if base_url(Settings.load()) != actual:  # what `invite` would assume from the environment
        where += f" --base-url {actual}"
    print(f"invite someone: {cmd} invite{where} --room lobby --ttl 1h", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    stop.clear()
    await _drain(app[HUB], stop)
    log.info("shutting down: closing connections within %.1f s", settings.shutdown_timeout)
    await runner.cleanup()  # stops accepting, runs on_shutdown (tells participants), closes
    log.info("stopped")
    return 0


async def _drain(hub: Hub, again: asyncio.Event) -> None:
    """With several nodes the rooms here move to other nodes first; a second signal
    skips the wait."""
    if hub.cluster is None:
        return
    drain = asyncio.create_task(hub.drain())
    signalled = asyncio.create_task(again.wait())
    await asyncio.wait((drain, signalled), return_when=asyncio.FIRST_COMPLETED)
    for task in (drain, signalled):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- desks --


def _desk_parser(sub: Any) -> None:
    desk = sub.add_parser("desk", help="service desks: create, list, show, delete")
    dsub = desk.add_subparsers(dest="desk_command", required=True)
    create = dsub.add_parser("create", help="create a desk")
    change = dsub.add_parser("update", help="change a desk's settings")
    for p in (create, change):
        _settings_args(p)
        p.add_argument("desk", help="the desk's name: a-z, 0-9, '-' (in its link: /desk/NAME)")
        p.add_argument("--name", dest="title", help="the title visitors see")
        p.add_argument("--languages", help="languages it serves in, e.g. ko,en,es")
        p.add_argument("--topics", help="topics a visitor may pick, e.g. tax,residence")
        p.add_argument("--hours", help='opening hours, e.g. "mon-fri 09:00-18:00; sat 10:00-13:00"')
        p.add_argument("--timezone", help="IANA time zone of --hours (UTC)")
        p.add_argument("--closed-message", help="what visitors see when the desk is closed")
        p.add_argument("--max-queue", type=int, help="visitors who may wait at once")
        p.add_argument("--assign", choices=["auto", "manual"], help="who assigns visitors")
    for name, text in (("list", "list desks"), ("show", "show a desk"), ("delete", "delete")):
        p = dsub.add_parser(name, help=text)
        _settings_args(p)
        if name != "list":
            p.add_argument("desk")
        if name in ("create", "show"):
            p.add_argument("--base-url", help="the hub's public address for the link")
    create.add_argument("--base-url", help="the hub's public address for the link")


def desk_command(args: argparse.Namespace, settings: Settings) -> int:
    from commhub.desks import db as desk_db
    from commhub.desks import model

    async def run() -> int:
        store = desk_db.DeskStore(desk_db.database_url(settings.database_url, settings.data_dir))
        try:
            await store.open()
            return await _desk(args, settings, store)
        except model.DeskError as exc:
            print(f"commhub desk: {exc.message}", file=sys.stderr)
            return 2
        finally:
            await store.close()

    return asyncio.run(run())


async def _desk(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    from commhub.desks import model

    cmd = args.desk_command
    if cmd == "list":
        for d in await store.list():
            state = "always open" if not d.hours else f"{d.hours} ({d.timezone})"
            print(f"{d.name}\t{d.title}\t{','.join(d.languages)}\t{d.assign}\t{state}")
        return 0
    if cmd != "create":
        found = await store.get(args.desk)
        if found is None:
            print(f"commhub desk: no desk {args.desk!r}", file=sys.stderr)
            return 1
    if cmd == "delete":
        await store.delete(args.desk)
        print(f"deleted desk {args.desk}", file=sys.stderr)
        return 0
    if cmd == "show":
        print(json.dumps(found.wire(), ensure_ascii=False, indent=2))
        print(f"{(args.base_url or base_url(settings)).rstrip('/')}/desk/{found.name}")
        return 0
    spec: dict[str, Any] = {"name": args.desk}
    for key in ("title", "languages", "topics", "hours", "timezone", "closed_message",
                "max_queue", "assign"):  # fmt: skip
        value = getattr(args, key)
        if value is not None:
            spec[key] = value
    if cmd == "create":
        made = await store.create(model.validate(spec, default_max_queue=settings.desk_max_queue))
        print(f"desk {made.name} created; visitors' link:", file=sys.stderr)
        print(f"{(args.base_url or base_url(settings)).rstrip('/')}/desk/{made.name}")
        return 0
    spec.pop("name")
    await store.save(model.validate(spec, current=found))
    print(f"desk {args.desk} updated (the hub reads it within seconds)", file=sys.stderr)
    return 0


def desk_agent_token(args: argparse.Namespace, settings: Settings, secret: str) -> int:
    from commhub.desks import db as desk_db
    from commhub.desks.tokens import issue_agent

    async def exists() -> bool:
        store = desk_db.DeskStore(desk_db.database_url(settings.database_url, settings.data_dir))
        try:
            await store.open()
            return await store.get(args.desk) is not None
        finally:
            await store.close()

    if not asyncio.run(exists()):
        print(f"commhub token: no desk {args.desk!r} (commhub desk create)", file=sys.stderr)
        return 2
    try:
        print(
            issue_agent(
                secret,
                desk=args.desk,
                identity=args.identity,
                name=args.name,
                speak=args.speak,
                read=args.read,
                languages=args.languages,
                ttl=args.ttl,
                issuer=settings.issuer,
            )
        )
    except ValueError as exc:
        print(f"commhub token: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
