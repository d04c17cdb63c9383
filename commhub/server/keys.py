"""Typed application keys."""

from aiohttp import web

from commhub.captions.live import LiveCaptions
from commhub.hub import Hub

HUB = web.AppKey("hub", Hub)
CAPTIONS = web.AppKey("captions", LiveCaptions)
