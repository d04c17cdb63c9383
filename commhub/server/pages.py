"""The pages' own routes: join links (/join/<invite>), a desk's visitor page
(/desk/<desk>) and agent console (/desk/<desk>/console), and the favicon."""

from __future__ import annotations

import functools
import struct
from pathlib import Path

from aiohttp import web

# An invite code in the address bar must not travel to other sites in a Referer header,
# and the page that holds it must not be cached by a shared proxy.
_JOIN_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def setup(app: web.Application, root: Path) -> None:
    async def join(request: web.Request) -> web.FileResponse:
        # The page reads the code from its address and asks /v1/invites/{code} about it.
        return web.FileResponse(root / "index.html", headers=_JOIN_HEADERS)

    async def desk(request: web.Request) -> web.FileResponse:
        # The page asks /v1/desks/{desk} about the desk; an unknown one is said so there.
        return web.FileResponse(root / "desk.html", headers=_JOIN_HEADERS)

    async def console(request: web.Request) -> web.FileResponse:
        # The agent's token comes in the fragment (#token=...): it never reaches a server.
        return web.FileResponse(root / "console.html", headers=_JOIN_HEADERS)

    async def favicon(request: web.Request) -> web.StreamResponse:
        if (root / "favicon.ico").is_file():
            return web.FileResponse(root / "favicon.ico")
        return web.Response(
            body=icon(),
            content_type="image/x-icon",
            headers={"Cache-Control": "max-age=86400"},
        )

    app.router.add_get("/join/{code}", join)
    app.router.add_get("/desk/{desk}", desk)
    app.router.add_get("/desk/{desk}/console", console)
    app.router.add_get("/favicon.ico", favicon)


@functools.cache
def icon(size: int = 32) -> bytes:
    """A small .ico (a teal disc with a white speech dot), drawn here: no binary in git."""
    c = (size - 1) / 2
    rows = []
    for y in range(size - 1, -1, -1):  # BMP rows go bottom-up
        row = bytearray()
        for x in range(size):
            d2 = (x - c) ** 2 + (y - c) ** 2
            if d2 <= (size * 0.16) ** 2:
                row += bytes((255, 255, 255, 255))  # BGRA
            elif d2 <= (size * 0.47) ** 2:
                row += bytes((0x75, 0x7A, 0x0B, 255))
            else:
                row += bytes(4)
        rows.append(bytes(row))
    pixels = b"".join(rows)
    mask = bytes(((size + 31) // 32) * 4 * size)  # AND mask: all opaque (alpha decides)
    header = struct.pack("<IiiHHIIiiII", 40, size, 2 * size, 1, 32, 0, len(pixels), 0, 0, 0, 0)
    image = header + pixels + mask
    entry = struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(image), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + image
