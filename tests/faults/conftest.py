"""The fault suite's fixtures and its summary table.

Every scenario takes `scale` (short in `make test`, soak with LIVEREPLAY_SOAK=1) and
`fault_run`; the run's row (faults injected, events acknowledged, deliveries,
duplicates, holes, gaps, peak RSS and fds) is collected here, printed as a table at
the end of the pytest run and written to artifacts/faults.json.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import SOAK, FaultRun, Row, Scale, scales

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "artifacts" / "faults.json"
ROWS = pytest.StashKey[list[Row]]()
OUTCOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scale" in metafunc.fixturenames:
        chosen = scales()
        metafunc.parametrize("scale", chosen, ids=[s.name for s in chosen])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[OUTCOME] = "ok" if report.passed else "FAILED"
    return report


@pytest.fixture
async def fault_run(request: pytest.FixtureRequest, scale: Scale) -> AsyncIterator[FaultRun]:
    name = getattr(request.node, "originalname", request.node.name).removeprefix("test_")
    run = FaultRun(name, scale)
    outcome: str | None = None
    try:
        yield run
    finally:
        outcome = request.node.stash.get(OUTCOME, "error")
        await run.aclose(outcome)
        request.config.stash[ROWS].append(run.row)


def _gaps(gaps: dict[str, int]) -> str:
    return " ".join(f"{d}={n}" for d, n in gaps.items()) or "-"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(
        json.dumps({"soak": SOAK, "rows": [dataclasses.asdict(r) for r in rows]}, indent=2) + "\n"
    )
    header: tuple[str, ...] = (
        "scenario",
        "faults",
        "acked",
        "deliveries",
        "dups",
        "disorder",
        "holes",
        "gaps",
        "RSS MB",
        "fds",
        "outcome",
    )
    table: list[tuple[str, ...]] = [
        (
            r.scenario,
            ", ".join(r.faults) or "-",
            str(r.acknowledged),
            str(r.deliveries),
            str(r.duplicates),
            str(r.out_of_order),
            str(r.holes),
            _gaps(r.gaps),
            f"{r.peak_rss_mb:.0f}",
            str(r.peak_fds),
            r.outcome,
        )
        for r in rows
    ]
    if not SOAK:
        # Compact in `make test`: the faults column is the widest and the least needed.
        header = header[:1] + header[2:]
        table = [t[:1] + t[2:] for t in table]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    write = terminalreporter.write_line
    terminalreporter.section(f"fault suite ({'soak' if SOAK else 'short'})")
    write("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for t in table:
        write("  ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)))
    write(f"(acked: events the writers had acknowledged; rows also in {ARTIFACT})")
