"""The host's reader: a session's events live, across every disconnect.

`machine` holds the resume rules (sans I/O), `client` is the asyncio shell
(`Reader`, `subscribe`), `transport` the seam it connects through, `errors` why it stops.
"""
