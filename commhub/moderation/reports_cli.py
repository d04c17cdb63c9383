"""`commhub reports ...` and `commhub bans ...`: the admin API of a running hub, called with an
admin token minted from the hub's secret (the same data dir or COMMHUB_SECRET as `serve`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from commhub import auth
from commhub.config import Settings

COMMANDS = ("reports", "bans")


def add_parsers(
    sub: Any,
    settings_args: Callable[[argparse.ArgumentParser], None],
    duration: Callable[[str], float],
) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        settings_args(p)
        p.add_argument(
            "--base-url", help="the hub's address (default: http://COMMHUB_HOST:COMMHUB_PORT)"
        )
        return p

    reports = sub.add_parser("reports", help="list, show and resolve participants' reports")
    rsub = reports.add_subparsers(dest="reports_command", required=True)
    rlist = common(rsub.add_parser("list", help="reports, newest first"))
    rlist.add_argument("--room", help="only this room's")
    rlist.add_argument("--status", choices=["open", "resolved"])
    rshow = common(rsub.add_parser("show", help="one report with its evidence (JSON)"))
    rshow.add_argument("id")
    rres = common(rsub.add_parser("resolve", help="close a report"))
    rres.add_argument("id")
    rres.add_argument("--resolution", required=True, help="what was done (text)")

    bans = sub.add_parser("bans", help="list, add and lift bans of identities from rooms")
    bsub = bans.add_subparsers(dest="bans_command", required=True)
    blist = common(bsub.add_parser("list", help="bans in force"))
    blist.add_argument("--room", help="only this room's")
    badd = common(bsub.add_parser("add", help="ban an identity from a room (removes it now)"))
    badd.add_argument("--room", required=True)
    badd.add_argument("--identity", required=True)
    badd.add_argument("--duration", type=duration, help="e.g. 15m, 1d (default: no end)")
    badd.add_argument("--reason", help="why (text)")
    blift = common(bsub.add_parser("lift", help="end a ban now"))
    blift.add_argument("id")


def run(args: argparse.Namespace, settings: Settings, default_url: str) -> int:
    api = AdminAPI((args.base_url or default_url).rstrip("/"), settings)
    try:
        if args.command == "reports":
            return _reports(api, args)
        return _bans(api, args)
    except ApiError as exc:
        print(f"commhub {args.command}: {exc}", file=sys.stderr)
        return 1


class ApiError(Exception):
    pass


class AdminAPI:
    def __init__(self, base: str, settings: Settings) -> None:
        self.base = base
        secret, _ = settings.resolve_secret()
        self.token = auth.issue(
            secret, room=auth.ANY_ROOM, identity="cli", grants=["admin"], ttl=300,
            issuer=settings.issuer,
        )  # fmt: skip

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())
                raise ApiError(f"{err['error']}: {err['message']}") from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(f"HTTP {exc.code} from {self.base}") from None
        except OSError as exc:
            raise ApiError(f"cannot reach the hub at {self.base}: {exc}") from None
        return json.loads(raw) if raw else None


def _query(**params: str | None) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""


def _when(ts: float | None) -> str:
    return "no end" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _reports(api: AdminAPI, args: argparse.Namespace) -> int:
    cmd = args.reports_command
    if cmd == "list":
        found = api.call("GET", "/v1/reports" + _query(room=args.room, status=args.status))
        for r in found["reports"]:
            subject = r.get("subject", {}).get("identity", "?")
            reporter = r.get("reporter", {}).get("identity", "?")
            print(
                f"{r['id']}  {r['status']:<8}  {_when(r['created_at'])}  {r['room']}  "
                f"{subject} ({r['reason']}) by {reporter}"
            )
        return 0
    quoted = urllib.parse.quote(args.id, safe="")
    if cmd == "show":
        report = api.call("GET", f"/v1/reports/{quoted}")
    else:
        report = api.call("POST", f"/v1/reports/{quoted}/resolve", {"resolution": args.resolution})
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def _bans(api: AdminAPI, args: argparse.Namespace) -> int:
    cmd = args.bans_command
    if cmd == "list":
        for b in api.call("GET", "/v1/bans" + _query(room=args.room))["bans"]:
            print(
                f"{b['id']}  {b['room']}  {b['identity']}  until {_when(b['until'])}  by {b['by']}"
            )
        return 0
    if cmd == "add":
        body: dict[str, Any] = {"identity": args.identity, "duration": args.duration}
        if args.reason:
            body["reason"] = args.reason
        room = urllib.parse.quote(args.room, safe="")
        ban = api.call("POST", f"/v1/rooms/{room}/bans", body)
        print(ban["id"])
        print(f"{ban['identity']} banned from {ban['room']} until {_when(ban['until'])}",
              file=sys.stderr)  # fmt: skip
        return 0
    api.call("DELETE", f"/v1/bans/{urllib.parse.quote(args.id, safe='')}")
    print(f"ban {args.id} lifted", file=sys.stderr)
    return 0
