"""The embedded MongoDB server's argv: heap, fatal-error exit and per-operation budget."""

from __future__ import annotations

from pathlib import Path

from headwater.settings import MongoSettings, Settings, StackSettings
from infra import mongo_server


def test_server_exits_on_oom_and_gets_its_heap_and_operation_budget(tmp_path: Path) -> None:
    settings = Settings(
        stack=StackSettings(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache"),
        mongo=MongoSettings(heap="512m", op_memory_mib=32, port=27999),
    )
    argv = mongo_server.server_command(settings)
    assert "-Xmx512m" in argv
    assert "-XX:+ExitOnOutOfMemoryError" in argv
    assert argv[argv.index("--op-memory-mib") + 1] == "32"
    assert argv[argv.index("--port") + 1] == "27999"
    assert argv[argv.index("--data-file") + 1].startswith(str(tmp_path / "run"))
