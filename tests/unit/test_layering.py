"""Dependencies point one way: the core (headwater/) imports nothing from the wings above it."""

from __future__ import annotations

import ast
from pathlib import Path

from headwater.settings import REPO_ROOT

CORE = REPO_ROOT / "headwater"
UPPER_LAYERS = ("consumer", "producer", "dags", "plugins")


def upward_imports(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """`file:line imports module` for every import of an upper layer in one Python file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            if module.split(".")[0] in UPPER_LAYERS:
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {module}")
    return found


def test_the_core_imports_nothing_from_consumer_producer_dags_or_plugins() -> None:
    files = sorted(CORE.glob("*.py"))
    assert files, f"no Python files in {CORE}"
    offending = [line for path in files for line in upward_imports(path)]
    assert not offending, "headwater/ must not import upward:\n" + "\n".join(offending)


def test_the_check_sees_lazy_and_aliased_imports(tmp_path: Path) -> None:
    # An import inside a function (to dodge a cycle) is still a dependency.
    module = tmp_path / "m.py"
    module.write_text(
        "import json\n"
        "from headwater import settings\n"
        "import producer.pull as pull\n"
        "def f():\n"
        "    from consumer.pipeline import plan_batch\n"
        "    import dags.ingest, plugins.headwater_health\n"
        "    from consumers_elsewhere import x\n"
    )
    assert upward_imports(module, tmp_path) == [
        "m.py:3 imports producer.pull",
        "m.py:5 imports consumer.pipeline",
        "m.py:6 imports dags.ingest",
        "m.py:6 imports plugins.headwater_health",
    ]
