"""Moderation: text filters (commhub.moderation.filters), the text policy applied to chat
and captions (commhub.moderation.text), strikes (commhub.moderation.strikes), imagery
(commhub.moderation.imagery), reports and moderator actions (commhub.moderation.actions,
commhub.moderation.evidence).

Kept import-light: engines load only when the app builds the filters (off the event loop).
"""
