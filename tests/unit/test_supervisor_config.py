"""The rendered supervisord config: every program, start order, logs, and safe quoting."""

from __future__ import annotations

import configparser
import subprocess
import time
from pathlib import Path

from headwater.settings import Settings, StackSettings
from infra.supervisor import Program, hold_path, render_config, wrapped_argv


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


def _command(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("command="))


def test_percent_signs_are_escaped_for_supervisor(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    command = _command(render_config(settings, [Program("p", ["echo", "100%"])]))
    assert command.endswith(" echo 100%%")


def test_arguments_with_spaces_stay_one_argument(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    command = _command(render_config(settings, [Program("p", ["sh", "-c", "echo a b"])]))
    assert command.endswith(" sh -c 'echo a b'")


def test_hold_wrapper_waits_for_the_hold_file_then_execs_the_program(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    out = tmp_path / "ran"
    program = Program("p", ["sh", "-c", f"echo $$ > {out}"])
    hold = hold_path(settings, "p")
    hold.parent.mkdir(parents=True)
    hold.touch()
    proc = subprocess.Popen(wrapped_argv(settings, program))
    try:
        time.sleep(0.6)
        assert not out.exists(), "program ran while held"
        hold.unlink()
        assert proc.wait(timeout=10) == 0
        # exec keeps the PID: what the supervisor watches is the program itself.
        assert out.read_text().strip() == str(proc.pid)
    finally:
        proc.kill()


def test_user_autostart_and_stop_signal_are_rendered(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(run_dir=tmp_path))
    programs = [
        Program("airflow-db", ["postgres"], user="postgres", stop_signal="INT"),
        Program("airflow-scheduler", ["airflow", "scheduler"], autostart=False),
    ]
    conf = _parse(render_config(settings, programs))
    db, scheduler = conf["program:airflow-db"], conf["program:airflow-scheduler"]
    assert (db["user"], db["stopsignal"], db["autostart"]) == ("postgres", "INT", "true")
    assert (scheduler["autostart"], scheduler["stopsignal"]) == ("false", "TERM")
    assert "user" not in scheduler
