"""Typed application keys."""

from aiohttp import web

from commhub.captions.live import LiveCaptions
from commhub.desks.service import Desks
from commhub.hub import Hub
from commhub.media import Media
from commhub.moderation.actions import Actions
from commhub.server.limits import Admission

HUB = web.AppKey("hub", Hub)
MEDIA = web.AppKey("media", Media)
CAPTIONS = web.AppKey("captions", LiveCaptions)
ADMISSION = web.AppKey("admission", Admission)
ACTIONS = web.AppKey("actions", Actions)
DESKS = web.AppKey("desks", Desks)
