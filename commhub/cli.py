"""The `commhub` command: serve, token (models, transcribe and translate join later)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from commhub import auth
from commhub.app import create_app
from commhub.config import Settings, SettingsError

log = logging.getLogger("commhub")


def duration(text: str) -> float:
    """'90', '90s', '15m', '6h', '2d' -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 90s, 15m, 6h, 2d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where secrets and databases live (COMMHUB_DATA_DIR)")
    p.add_argument("--models-dir", help="installed models (COMMHUB_MODELS_DIR)")


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

    token = sub.add_parser("token", help="print an access token")
    _settings_args(token)
    token.add_argument("--room", required=True, help="room name, or '*' with --admin")
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
    return top


def _load(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "data_dir": getattr(args, "data_dir", None),
        "models_dir": getattr(args, "models_dir", None),
        **extra,
    }
    return Settings.load(overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = _load(args, host=args.host, port=args.port, log_level=args.log_level)
            return asyncio.run(serve(settings))
        if args.command == "token":
            return token(args, _load(args))
    except SettingsError as exc:
        print(f"commhub: {exc}", file=sys.stderr)
        return 2
    return 1


def token(args: argparse.Namespace, settings: Settings) -> int:
    secret, created = settings.resolve_secret()
    if created:
        print(
            f"commhub: generated a development secret in {settings.data_dir}/secret",
            file=sys.stderr,
        )
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
            )
        )
    except ValueError as exc:
        print(f"commhub token: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secret, created = settings.resolve_secret()
    if created:
        log.warning(
            "no COMMHUB_SECRET set: generated a development secret in %s/secret", settings.data_dir
        )
    app = create_app(settings, secret)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = runner.addresses[0][1]
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"commhub listening on http://{host}:{port}", flush=True)
    print(
        "get a token: commhub token --room lobby --identity alice --speak ko --read en",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: closing connections within %.1f s", settings.shutdown_timeout)
    await runner.cleanup()  # stops accepting, runs on_shutdown (tells participants), closes
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
