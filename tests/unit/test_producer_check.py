"""`python -m producer check NAME` and `sources`: an entry's problems, or what it declares."""

from __future__ import annotations

import pytest

import producer.__main__ as cli
from headwater.sources import build_catalog
from tests.unit.declared import entry

CATALOG = build_catalog(
    [
        (
            "sources.yaml",
            {
                "sources": {
                    "ok": entry(topic="ok", description="a fine source"),
                    "bad": entry(
                        topic="bad",
                        key_fields=["nope"],
                        contracts={1: {"fields": {"ts": "timestamp"}}},
                    ),
                }
            },
        )
    ]
)


@pytest.fixture(autouse=True)
def catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "load_catalog", lambda: CATALOG)


def test_an_invalid_entry_is_named_with_what_to_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "bad"]) == 1
    assert capsys.readouterr().out.strip() == (
        "source bad is invalid: entry: contracts[1]: key field 'nope' is not declared"
    )


def test_a_valid_entry_is_described_field_by_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "ok", "--no-sample"]) == 0
    out = capsys.readouterr().out
    assert "source ok: a fine source" in out
    assert "  stores  x, event time in ts" in out
    assert "    field ts: timestamp iso8601" in out
    assert out.rstrip().endswith("entry: valid")


def test_an_unknown_name_lists_the_declared_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "weather"]) == 1
    assert "unknown source 'weather'; declared: ok" in capsys.readouterr().out


def test_sources_lists_the_invalid_entries_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sources"]) == 0
    out = capsys.readouterr().out
    assert "ok               topic=ok" in out
    assert "bad              INVALID: entry: contracts[1]: key field 'nope' is not declared" in out
