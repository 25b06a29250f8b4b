"""The embedded MongoDB-wire server's argv: heap, fatal errors end the JVM, its own flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.settings import MongoSettings, Settings, StackSettings
from infra.mongo_server import MAIN_CLASS, data_file, server_command


def _settings(tmp_path: Path, **mongo: object) -> Settings:
    return Settings(
        stack=StackSettings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache"),
        mongo=MongoSettings(**mongo),
    )


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_an_out_of_memory_error_ends_the_jvm_so_supervisord_restarts_it(tmp_path: Path) -> None:
    argv = server_command(_settings(tmp_path, heap="256m"))
    jvm_options = argv[: argv.index(MAIN_CLASS)]
    assert "-XX:+ExitOnOutOfMemoryError" in jvm_options
    assert "-Xmx256m" in jvm_options


def test_server_listens_on_the_settings_host_and_port_with_its_data_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path, host="127.0.0.2", port=27999)
    argv = server_command(settings)
    assert argv[0] == "java"
    assert _flag(argv, "--host") == "127.0.0.2"
    assert _flag(argv, "--port") == "27999"
    assert _flag(argv, "--data-file") == str(data_file(settings))
    assert data_file(settings).is_relative_to(tmp_path / "run")


def test_the_per_operation_memory_budget_comes_from_settings(tmp_path: Path) -> None:
    argv = server_command(_settings(tmp_path, op_memory_mib=32))
    assert _flag(argv, "--op-memory-mib") == "32"
    assert argv.index("--op-memory-mib") > argv.index(MAIN_CLASS)


def test_the_budget_defaults_to_128_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGO_OP_MEMORY_MIB", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert _flag(server_command(_settings(tmp_path)), "--op-memory-mib") == "128"


def test_the_per_operation_time_limit_comes_from_settings(tmp_path: Path) -> None:
    argv = server_command(_settings(tmp_path, op_time_limit_s=45))
    assert _flag(argv, "--op-time-limit-s") == "45"
