"""The declared public API: what `livereplay` and `livereplay.protocol` export."""

from __future__ import annotations

import types

import pytest

import livereplay
import livereplay.protocol
from livereplay import ClientClosed, LiveReplayError, ProtocolError, WriterRefused

PUBLIC_MODULES = [livereplay, livereplay.protocol]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_declared_name_exists_and_none_is_private(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), name
        assert not name.startswith("_") or name == "__version__", name


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_one_except_catches_every_error_livereplay_raises_on_purpose(
    module: types.ModuleType,
) -> None:
    errors = [
        value
        for value in (getattr(module, name) for name in module.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert errors
    outside = [e.__name__ for e in errors if not issubclass(e, LiveReplayError)]
    assert outside == []


def test_a_refusal_carries_its_protocol_code() -> None:
    refused = WriterRefused("forbidden", "this endpoint needs the writer token")
    assert isinstance(refused, ProtocolError)
    assert (refused.code, refused.message) == ("forbidden", "this endpoint needs the writer token")
    assert "forbidden" in str(refused)
    # Closing is a usage error as well as one of ours.
    assert issubclass(ClientClosed, RuntimeError)
