"""Test-only fault injection: make the daemon refuse what it would refuse under a fault.

The fault suite needs refusals a healthy daemon on one machine never makes on cue,
such as a writer's window re-send refused once with 503 while Redis fails over. They
are armed by the environment of the daemon process only:

    LIVEREPLAY_FAILPOINTS="refuse_restore=503x1"   # the first restore batch gets 503

Each entry is `name=value[xcount]` (count 1 when left out). A daemon with any armed
logs a warning at start. Unarmed, `hit` is one dictionary lookup.
"""

from __future__ import annotations

import os
from typing import Final

ENV: Final = "LIVEREPLAY_FAILPOINTS"
# The failpoints the daemon has, and the values each takes: `refuse_restore` refuses a
# batch restoring a writer's window with this HTTP status, as a refusal worth retrying.
KNOWN: Final = {"refuse_restore": frozenset({"429", "503"})}


class Failpoints:
    def __init__(self, spec: str = "") -> None:
        self._armed: dict[str, list[str]] = {}
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            name, _, rest = entry.partition("=")
            value, _, count = rest.partition("x")
            if value not in KNOWN.get(name, ()) or (count and not count.isdigit()):
                raise ValueError(f"{ENV}: not a failpoint: {entry!r} (known: {sorted(KNOWN)})")
            self._armed[name] = [value] * int(count or 1)

    @classmethod
    def from_environment(cls) -> Failpoints:
        return cls(os.environ.get(ENV, ""))

    @property
    def armed(self) -> list[str]:
        return sorted(name for name, values in self._armed.items() if values)

    def hit(self, name: str) -> str | None:
        """The value to inject at `name` this time, or None (and one use less)."""
        values = self._armed.get(name)
        return values.pop() if values else None
