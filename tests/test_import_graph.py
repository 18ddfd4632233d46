"""scripts/import_graph.py: the app's import graph is clean, and the check finds what it is for."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_app_has_no_cycle_no_upward_import_and_no_import_time_work():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 problem(s)" in run.stdout


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "app" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_an_upward_import_a_cycle_and_import_time_work_are_each_reported(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "from .catalog import cards\n",  # foundation importing the catalog: upward
        "catalog/__init__.py": "",
        "catalog/cards.py": "def f():\n    from ..sources import steps  # lazy, still an edge\n",
        "sources/__init__.py": "",
        "sources/steps.py": "from ..catalog import cards\nregister = []\nregister.append(1)\n",
        "sources/writes.py": "import app.sources.steps\nx = {}\nx['k'] = 1\n",
    })
    problems = _script().check(root)
    text = "\n".join(problems)
    assert "upward import: app.errors (foundation) imports app.catalog.cards" in text
    assert "upward import: app.catalog.cards (the catalog of report cards) imports app.sources.steps" in text
    assert "import cycle: app.catalog.cards -> app.sources.steps" in text
    assert "app/sources/steps.py:3: module-level Expr does something" in text
    assert "app/sources/writes.py:3: module-level Assign does something" in text
    assert len(problems) == 5


def test_a_module_outside_every_layer_is_reported(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "newthing.py": "VALUE = 1\n"})
    assert _script().check(root) == ["app.newthing: in no layer of scripts/import_graph.py (add it to LAYERS)"]
