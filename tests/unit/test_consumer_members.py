"""The stack's consumer group: one supervised program per member, each with its own name and port,
and every place that checks the consumer checks each member."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from headwater.settings import (
    AirflowSettings,
    ConsumerSettings,
    ServiceSettings,
    Settings,
    StackSettings,
)
from infra import health, stack
from infra.supervisor import render_config


def _settings(tmp_path: Path, processes: int, port: int = 38001) -> Settings:
    return Settings(
        stack=StackSettings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache"),
        airflow=AirflowSettings(sql_alchemy_conn="sqlite:////tmp/unused.db"),
        services=ServiceSettings(consumer_port=port),
        consumer=ConsumerSettings(processes=processes),
    )


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for var in ("HEADWATER_CONSUMER_PROCESSES", "HEADWATER_CONSUMER_PORT", "MONGO_URI"):
        monkeypatch.delenv(var, raising=False)


def test_two_members_by_default_on_consecutive_ports(no_env: None) -> None:
    members = Settings().consumer_members()
    assert [(m.name, m.port, m.url) for m in members] == [
        ("consumer-1", 8001, "http://127.0.0.1:8001"),
        ("consumer-2", 8002, "http://127.0.0.1:8002"),
    ]


def test_the_number_of_members_is_a_setting(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_CONSUMER_PROCESSES", "3")
    monkeypatch.setenv("HEADWATER_CONSUMER_PORT", "38001")
    assert [(m.name, m.port) for m in Settings().consumer_members()] == [
        ("consumer-1", 38001),
        ("consumer-2", 38002),
        ("consumer-3", 38003),
    ]


def test_at_least_one_member(no_env: None) -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ConsumerSettings(processes=0)


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_each_member_is_a_program_with_its_own_instance_and_port(
    no_env: None, tmp_path: Path, processes: int
) -> None:
    settings = _settings(tmp_path, processes)
    programs = {p.name: p for p in stack.programs(settings)}
    names = [f"consumer-{i}" for i in range(1, processes + 1)]
    assert [n for n in programs if n.startswith("consumer")] == names
    conf = configparser.RawConfigParser()
    conf.read_string(render_config(settings, list(programs.values())))
    for i, name in enumerate(names):
        program = programs[name]
        assert program.argv[-4:] == ["-m", "consumer", "--port", str(38001 + i)]
        assert program.env == {"HEADWATER_CONSUMER_INSTANCE": name}
        section = conf[f"program:{name}"]
        assert section["environment"] == f'HEADWATER_CONSUMER_INSTANCE="{name}"'
        assert section["stdout_logfile"].endswith(f"/logs/{name}.log")


def test_the_stack_is_healthy_only_when_every_member_answers(no_env: None, tmp_path: Path) -> None:
    def probe(name: str, url: str) -> health.Check:
        return health.Check(name, name != "consumer-2", url)

    checks = health.check_consumers(_settings(tmp_path, 2), probe)
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("consumer-1", True, "http://127.0.0.1:38001/healthz"),
        ("consumer-2", False, "http://127.0.0.1:38002/healthz"),
    ]


def test_the_summary_names_every_member_and_the_group(
    no_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.print_summary(_settings(tmp_path, 2))
    out = capsys.readouterr().out
    assert "consumer-1 http://127.0.0.1:38001, consumer-2 http://127.0.0.1:38002" in out
    assert "group headwater-consumer" in out
