"""Test helpers, one place for each: audio (synthesis, WAV files), media (tracks, peers,
clients, leak census), sdk (ears on remote tracks), hubproc (the hub as its own process),
wait (polling, and the barrier that proves nothing more is coming), metrics (/metrics read
over HTTP), http (admin calls), browser (headless Chromium), translate (tiny Argos packages
built for real, the Apertium mark). Hub fixtures stay in conftest.py, where pytest finds
them."""
