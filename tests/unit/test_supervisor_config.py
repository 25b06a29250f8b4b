"""The rendered supervisord config: every program, start order, logs, and safe quoting."""

from __future__ import annotations

import configparser
from pathlib import Path

from headwater.settings import Settings, StackSettings
from infra.supervisor import Program, render_config


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_each_program_gets_a_section_with_restart_policy_and_log(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    programs = [
        Program("kafka-controller", ["java", "-cp", "x/*", "kafka.Kafka"], priority=10),
        Program("airflow-scheduler", ["airflow", "scheduler"], priority=50),
    ]
    conf = _parse(render_config(settings, programs))
    for program in programs:
        section = conf[f"program:{program.name}"]
        assert section["autorestart"] == "true"
        assert section["killasgroup"] == "true"
        assert section["stdout_logfile"] == str(tmp_path / "logs" / f"{program.name}.log")
        assert section["priority"] == str(program.priority)
    assert conf["unix_http_server"]["file"] == str(tmp_path / "supervisor.sock")
    assert conf["supervisorctl"]["serverurl"] == f"unix://{tmp_path / 'supervisor.sock'}"


def test_percent_signs_are_escaped_for_supervisor(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    text = render_config(settings, [Program("p", ["echo", "100%"])])
    assert "command=echo 100%%" in text


def test_arguments_with_spaces_stay_one_argument(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    text = render_config(settings, [Program("p", ["sh", "-c", "echo a b"])])
    assert "command=sh -c 'echo a b'" in text
