"""The Python reader's rules against the vectors the JavaScript reader passes too.

Each frame goes in as the daemon sends it, JSON text or the same object as
MessagePack, through `ReaderMachine.receive_message` (tests/vectors/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from livereplay.protocol.frames import gap_body, text
from livereplay.protocol.records import EventOut
from livereplay.protocol.rules import Gap
from livereplay.reader.errors import ReaderError, ReaderProtocolError, ReaderRefused
from livereplay.reader.machine import Item, ReaderMachine

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "reader.json").read_text()
)["vectors"]


def as_json(item: Item) -> dict[str, Any]:
    if isinstance(item, EventOut):
        return {"event": item.cursor}
    if isinstance(item, Gap):
        return {"gap": msgspec.to_builtins(gap_body(item))}
    return {"caught_up": text(item.cursor)}


def encode(frame: dict[str, Any], codec: str) -> str | bytes:
    return json.dumps(frame) if codec == "json" else msgspec.msgpack.encode(frame)


def run_step(machine: ReaderMachine, step: dict[str, Any], codec: str) -> list[Item]:
    if "connect" in step:
        machine.connected()
        return []
    if "close" in step:
        machine.closed(step["close"])
        return []
    return machine.receive_message(encode(step["frame"], codec))


def check_raised(error: ReaderError, expected: dict[str, Any]) -> None:
    if expected["kind"] == "protocol":
        assert isinstance(error, ReaderProtocolError)
    else:
        assert expected["kind"] == "refused"
        assert isinstance(error, ReaderRefused)
        assert (error.close_code, error.code) == (expected["close_code"], expected["code"])


def test_there_are_vectors_with_unique_names() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) >= 12
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_machine_passes_the_vector(vector: dict[str, Any], codec: str) -> None:
    machine = ReaderMachine(vector["start"])
    assert machine.cursor == vector["start"]
    for number, step in enumerate(vector["steps"]):
        expect = step["expect"]
        if "raises" in expect:
            with pytest.raises(ReaderError) as raised:
                run_step(machine, step, codec)
            check_raised(raised.value, expect["raises"])
            assert number == len(vector["steps"]) - 1, "a raise ends the vector"
            break
        items = run_step(machine, step, codec)
        assert [as_json(item) for item in items] == expect["items"], f"step {number}"
        assert machine.cursor == expect["cursor"], f"step {number}"
    stats = machine.stats
    assert {
        "events": stats.events,
        "gaps": stats.gaps,
        "duplicates_dropped": stats.duplicates_dropped,
    } == vector["stats"]
