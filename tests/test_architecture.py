"""The dependency rule of ARCHITECTURE.md, checked on the source and in a fresh interpreter.

- ``catalog_lora`` (the core) imports none of the other project folders;
- inside the core, each room (``catalog_lora/<room>/``) imports only the rooms of :data:`CORE_ROOMS`
  (and itself), as its ``__init__.py`` says; no core module lies outside a room;
- ``datasets_prep`` and ``training`` import only the core (and themselves);
- ``model_cards`` (publishing) imports only the core (and itself);
- ``spaces/app.py`` imports only the core and the card renderer (``model_cards.card``);
- no module imports itself back through a chain of imports.

Every import counts, also those inside functions: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

CORE = "catalog_lora"
PACKAGES = (CORE, "datasets_prep", "training", "model_cards", "spaces")
# what each folder may import besides itself
ALLOWED = {
    CORE: set(),
    "datasets_prep": {CORE},
    "training": {CORE},
    "model_cards": {CORE},
    "spaces": {CORE, "model_cards.card"},
}
# the core's rooms (catalog_lora/<room>/): what each may import of the other rooms (a whole room, or one
# module of it: "room.module"); no loop between them
CORE_ROOMS = {
    "records": set(),
    "runs": {"records"},
    "model": set(),
    "retrieval": {"model.batching", "records", "runs"},
    "inference": {"model", "records", "retrieval", "runs"},
    "catalogs": {"inference", "runs"},
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every absolute module name an ``import`` or ``from … import`` in the file names (``from a import b``: ``a.b`` too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is (or is inside), or None for a module from outside the project.

    The Space's rooms import each other by their own names (``catalog_space.models``): ``spaces/``
    is on their ``sys.path``, beside ``app.py``."""
    for candidate in (name, f"spaces.{name}"):
        while candidate and candidate not in modules:
            candidate = candidate.rpartition(".")[0]
        if candidate and candidate != "spaces":
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        module: {target for name in imported_names(path) if (target := resolve(name, modules)) not in (None, module)}
        for module, path in modules.items()
    }


def room(module: str) -> str | None:
    """The core room of a core module (``catalog_lora.retrieval.references`` → ``retrieval``); None for the
    package ``catalog_lora`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def allowed(source: str, target: str) -> bool:
    folder = source.split(".")[0]
    if folder == CORE and target.split(".")[0] == CORE:
        rules = CORE_ROOMS.get(room(source), set())
        return room(target) == room(source) or room(target) in rules or ".".join(target.split(".")[1:3]) in rules
    own = target.split(".")[0] == folder
    return own or any(target == rule or target.startswith(rule + ".") for rule in ALLOWED[folder])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import loops, each as the chain of modules that closes it (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_every_import_points_the_allowed_way():
    graph = import_graph()
    assert any(module.startswith(CORE) for module in graph) and "spaces.app" in graph
    assert "spaces.catalog_space.models" in graph["spaces.app"], "the Space's own imports are followed"
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        if not allowed(source, target)
    )
    assert wrong == [], "imports against the dependency rule of ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_no_import_cycle():
    loops = cycles(import_graph())
    assert loops == [], "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_every_core_module_lives_in_a_room():
    modules = [module for module in project_modules() if module.split(".")[0] == CORE and module != CORE]
    assert sorted({room(module) for module in modules}) == sorted(CORE_ROOMS)
    assert all(f"{CORE}.{room(module)}" in project_modules() for module in modules), "each room is a package"


def test_the_rooms_import_each_other_one_way():
    loops = cycles({name: {rule.split(".")[0] for rule in rules} for name, rules in CORE_ROOMS.items()})
    assert loops == [], "loops between the core's rooms:\n" + "\n".join(" -> ".join(loop) for loop in loops)


@pytest.mark.parametrize("name", sorted(CORE_ROOMS))
def test_each_room_says_what_it_imports_and_imports_nothing_itself(name):
    """A room's ``__init__.py`` states its rule in its docstring and holds no import (no re-export, no
    import-time work): importing a room is as cheap as importing a module of it."""
    path = REPO / CORE / name / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stated = re.search(r"Imports (?:from the core: (.*?)\.(?:\s|$)|no other room)", ast.get_docstring(tree) or "", re.S)
    assert stated, f"{path.relative_to(REPO)}: its docstring does not say which rooms it imports"
    assert set(re.findall(r"``([\w.]+)``", stated[1] or "")) == CORE_ROOMS[name]
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize(
    ("source", "target", "verdict"),
    [
        ("catalog_lora.records.labels", "catalog_lora.inference.engine", False),
        ("catalog_lora.retrieval.references", "catalog_lora.inference.generation", False),
        ("catalog_lora.retrieval.references", "catalog_lora.model.base_model", False),
        ("catalog_lora.retrieval.embeddings", "catalog_lora.model.batching", True),
        ("catalog_lora.runs.folder", "catalog_lora.catalogs.tables", False),
        ("catalog_lora.catalogs.batch", "catalog_lora.inference.engine", True),
        ("catalog_lora.inference.head", "catalog_lora.retrieval.neighbours", True),
        ("catalog_lora.records.task_spec", "catalog_lora.records.labels", True),
        ("catalog_lora.inference.engine", "training.data", False),
        ("datasets_prep.prepare", "model_cards.publish", False),
        ("model_cards.card", "training.metrics", False),
        ("spaces.app", "model_cards.publish", False),
        ("spaces.app", "model_cards.card", True),
        ("training.train", "catalog_lora.inference.engine", True),
    ],
)
def test_the_rule_itself(source, target, verdict):
    assert allowed(source, target) is verdict


FRESH_IMPORT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def fresh_import(modules) -> set[str]:
    """The top-level names in ``sys.modules`` after importing ``modules`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORT, *modules],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_importing_the_core_loads_no_other_project_folder():
    """Every core module imported in a fresh interpreter: ``sys.modules`` then holds no other project folder."""
    loaded = fresh_import(module for module in project_modules() if module.split(".")[0] == CORE)
    assert CORE in loaded
    assert loaded & set(PACKAGES[1:]) == set()


def test_importing_the_rooms_is_cheap():
    """The rooms' packages alone, in a fresh interpreter: no torch, pandas or transformers comes with them."""
    loaded = fresh_import(f"{CORE}.{name}" for name in CORE_ROOMS)
    assert CORE in loaded and loaded.isdisjoint({"torch", "pandas", "transformers", "numpy"})


def test_no_test_helper_ships_in_the_packages():
    """The Hub test server and invented run folders live under tests/, never in a shipped package."""
    shipped = project_modules()
    assert "catalog_lora.hub_server" not in shipped and "model_cards.example_run" not in shipped
    writers = [
        module for module, path in shipped.items() if "COMPLETE_MARKER).write" in path.read_text(encoding="utf-8")
    ]
    # only training.run_folder marks a run folder finished (the end of a real training run, or training.tune's re-tuning of one)
    assert writers == ["training.run_folder"]
