"""The rooms and the arrows between them (docs/architecture.md, "Rooms"): which part of
the code may import which. Read from the source with ``ast``, nothing is imported.

- ``models/`` is pure: nothing from ``streams``, nor Faust, Kafka, Prometheus or HTTP.
- The worker (``streams/`` itself and ``streams/agents/``) imports none of
  ``streams.cli``, ``streams.offline``, ``streams.local``.
- ``streams.offline`` replays without Kafka: no Faust or Kafka client, no ``streams.cli``
  or ``streams.local``; ``streams.local`` (the rig) imports no ``streams.cli``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (room, forbidden module prefixes); a room is a path prefix under the repository root.
SERVICE_LIBS = ("faust", "kafka", "aiokafka", "prometheus_client", "aiohttp", "mode")
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("models", ("streams",) + SERVICE_LIBS),
    ("streams/offline", ("streams.cli", "streams.local", "faust", "kafka", "aiokafka")),
    ("streams/local", ("streams.cli",)),
    ("streams/cli", ()),  # the command may use every other room
    ("streams", ("streams.cli", "streams.offline", "streams.local")),  # the worker
)
ROOMS = ("streams/cli", "streams/offline", "streams/local")


def room_of(rel: Path) -> str:
    """The most specific room a file (path relative to the root) belongs to."""
    s = rel.as_posix()
    for room in ROOMS:
        if s.startswith(room + "/"):
            return room
    return rel.parts[0]


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (module ``module``),
    including those inside functions; relative imports are resolved."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            out.append((node.lineno, base))
            # `from streams import cli` imports the module streams.cli
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def violations(root: Path) -> list[str]:
    """Every forbidden import under ``root``'s ``models/`` and ``streams/``, as
    ``path:line imports module``."""
    found: list[str] = []
    for path in sorted([*root.glob("models/**/*.py"), *root.glob("streams/**/*.py")]):
        rel = path.relative_to(root)
        room = room_of(rel)
        forbidden = dict(RULES)[room]
        module = ".".join(rel.with_suffix("").parts)
        for line, name in imported_modules(path.read_text(encoding="utf-8"), module):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{rel}:{line} imports {name}")
    return sorted(set(found))


def test_the_repository_keeps_its_arrows() -> None:
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("streams/agents/x.py", "from streams.cli.demo import run_demo\n",
         "streams/agents/x.py:1 imports streams.cli.demo"),
        ("streams/web.py", "def f():\n    import streams.local.broker\n",
         "streams/web.py:2 imports streams.local.broker"),
        ("streams/app.py", "from streams import offline\n",
         "streams/app.py:1 imports streams.offline"),
        ("models/ads/x.py", "from streams.metrics import Metrics\n",
         "models/ads/x.py:1 imports streams.metrics"),
        ("models/x.py", "import faust\n", "models/x.py:1 imports faust"),
        ("streams/offline/x.py", "from ..local import broker\n",
         "streams/offline/x.py:1 imports streams.local"),
        ("streams/local/x.py", "from streams.cli.main import main\n",
         "streams/local/x.py:1 imports streams.cli.main"),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path: Path, name: str, source: str,
                                      expected: str) -> None:
    root = _tree(tmp_path, {name: source})
    assert expected in violations(root)


def test_allowed_arrows_pass(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "streams/cli/main.py": "from streams.local.broker import LocalBroker\n"
                               "from streams.offline.evaluate import run\nimport faust\n",
        "streams/local/chaos.py": "from streams.settings import Settings\nimport kafka\n",
        "streams/agents/ads.py": "from models.ads.bidding import Bidder\n"
                                 "from streams import topics\n",
        "models/engine.py": "import numpy\nfrom models.users.profile import UserProfile\n",
    })
    assert violations(root) == []


# Every module of the worker that declares or registers something on the app.
WORKER_MODULES = ("streams.topics", "streams.tables", "streams.agents.ingest",
                  "streams.agents.profile", "streams.agents.ads", "streams.agents.items",
                  "streams.agents.modelsync", "streams.agents.checkpoints",
                  "streams.agents.deadletter", "streams.web", "streams.gauges",
                  "streams.runtime", "streams.app", "streams.worker")


def test_each_worker_module_imports_first_in_a_fresh_interpreter() -> None:
    # No import circle: whichever module a test, a tool or a reader imports first, the
    # import works (an app module importing its agents at its end broke this).
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for m in WORKER_MODULES}
    failed = {}
    for module, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failed[module] = err.decode(errors="replace").strip().splitlines()[-1:]
    assert failed == {}


def test_the_worker_module_registers_every_agent_and_view() -> None:
    code = ("import streams.worker as w; "
            "print(sorted(a.name for a in w.app.agents.values())); "
            "print('/metrics' in dict(w.app.web.views))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    agents, metrics_view = out.stdout.splitlines()
    for name in ("persona.profile", "persona.ads", "persona.items", "persona.ingest-control"):
        assert name in agents
    assert metrics_view == "True"
