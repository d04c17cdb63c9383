"""Typed application keys."""

from aiohttp import web

from commhub.hub import Hub

HUB = web.AppKey("hub", Hub)
