"""Moderation: text filters, imagery, reports and moderator actions."""
