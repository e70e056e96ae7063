"""The host's reader: a session's events live, across every disconnect."""
