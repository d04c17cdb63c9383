"""The desk pages are served by the hub: the visitor's page and the agent console, with the
join pages' headers (no Referer leaves them, no shared cache keeps them), and the scripts
they load."""

from __future__ import annotations

import aiohttp

from tests.conftest import StartHub


async def test_desk_pages_and_their_scripts_are_served(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(captions=False, translation=False)
    for path, script in (
        ("/desk/support-foreigners", "/static/desk.js"),
        ("/desk/support-foreigners/console", "/static/console.js"),
    ):
        async with http.get(hub.url + path) as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["Cache-Control"] == "no-store"
            assert f'src="{script}"' in await r.text()
    for name in ("desk.js", "console.js", "desklink.js", "deskui.js", "languages.js", "desk.css"):
        async with http.get(f"{hub.url}/static/{name}") as r:
            assert r.status == 200, name
    # deeper paths are not pages
    async with http.get(hub.url + "/desk/support-foreigners/console/x") as r:
        assert r.status == 404
