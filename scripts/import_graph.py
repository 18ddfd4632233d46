"""Check the import graph of the ``app`` package: no cycle, no upward import, no work at import.

    python scripts/import_graph.py [--graph]

Every ``import`` in every module under app/ counts, wherever it stands (a function's lazy import
is an edge too; so is one under ``TYPE_CHECKING``: it still says the module depends on the other).
Modules are placed in the layers of :data:`LAYERS`, top first; a module may import modules of its
own layer or of a layer below it, never above. Separately, the whole graph must have no cycle.

A module must also do nothing when imported (STYLE.md, "importing does nothing"): at module level
only imports, definitions, assignments to names and docstrings, so no call statement such as
``register_handler(...)``, no assignment into another module or a registry (``x.y = …``,
``x[k] = …``), no loop. ``if``/``try`` blocks are held to the same rule.

Exits 1 with one line per problem; ``--graph`` also prints every module with its layer and imports.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "app"

# Top first. A module goes to the layer of the most specific pattern it matches: an exact name
# beats a pattern, a pattern naming a module's role (``app.*.routes``) beats one naming a package
# (``app.connect.*``), and a longer pattern beats a shorter one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points: the app factory, the CLI, gunicorn's hooks",
     ("app", "app.cli", "app.serving", "app.migrations", "app.migrations.*")),
    ("HTTP routes", ("app.*.routes", "app.docs", "app.health")),
    ("the Airbyte dialect: its use cases compose the services below", ("app.airbyte", "app.airbyte.*")),
    ("wiring: the collaborators create_app puts on the app", ("app.wiring",)),
    ("the hosted connect page and accounts", ("app.connect", "app.connect.*", "app.accounts", "app.accounts.*",
                                              "app.source_types")),
    ("the OAuth handshake (a reconnect updates its source)", ("app.oauth", "app.oauth.*")),
    ("source write use cases (their collaborators are injected)", ("app.sources.writes",)),
    ("using a configured source: execute and the proxy", ("app.execute", "app.execute.*")),
    ("checks, discovery and field selection", ("app.discovery", "app.discovery.*")),
    ("connectors: calls to a source's API, tokens", ("app.connectors", "app.connectors.*")),
    ("background jobs", ("app.jobs", "app.jobs.*")),
    ("the sources' core: read model, events, credentials, rules, steps, presenter",
     ("app.sources", "app.sources.*")),
    # Below the sources' core, so that record_event can write the outbox next to every event.
    ("webhooks: endpoints, the outbox, deliveries", ("app.webhooks", "app.webhooks.*")),
    ("the catalog of report cards", ("app.catalog", "app.catalog.*")),
    ("request handling around the views", ("app.auth", "app.ratelimit", "app.request_checks", "app.logs",
                                           "app.secrets_store", "app.security_headers")),
    ("request schemas", ("app.*.schemas", "app.schemas", "app.extensions")),
    ("infrastructure", ("app.db", "app.crypto", "app.templating", "app.wakeup")),
    ("models", ("app.models", "app.*.models")),
    # app.webhooks.events: the event types and their data, pure (request schemas list them).
    ("foundation", ("app.config", "app.errors", "app.paths", "app.redaction", "app.webhooks.events")),
]
# Alembic's revisions and its env script are run by Alembic (env.py does its work when Alembic
# imports it): they are not modules of the service.
SKIPPED = ("app.migrations.versions.*", "app.migrations.env")
# Imports the layers allow against their order, each with its reason.
ALLOWED = {
    ("app.models", "app.*.models"): "load_all_models() imports every package's models so that "
                                    "Base.metadata knows all tables (called by create_app)",
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def modules(root: Path = ROOT) -> dict[str, Module]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        if not any(fnmatchcase(name, pattern) for pattern in SKIPPED):
            found[name] = Module(name, path, is_package)
    return found


def layer_of(name: str) -> int | None:
    best: tuple[tuple[bool, bool, int], int] | None = None
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if fnmatchcase(name, pattern):
                rank = ("*" not in pattern, not pattern.endswith("*"), len(pattern))
                if best is None or rank > best[0]:
                    best = (rank, index)
    return None if best is None else best[1]


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: Module, known: dict[str, Module]) -> set[str]:
    """The modules of the package that ``module`` imports (a ``from package import submodule`` is
    an import of the submodule)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(module.path.read_text(), str(module.path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {target for target in targets if target in known and target != module.name}


def allowed(source: str, target: str) -> bool:
    return any(fnmatchcase(source, a) and fnmatchcase(target, b) for a, b in ALLOWED)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _module_level(statements: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    for statement in statements:
        if isinstance(statement, ast.If):
            yield from _module_level(statement.body)
            yield from _module_level(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody,
                          *(handler.body for handler in statement.handlers)):
                yield from _module_level(block)
        else:
            yield statement


def _does_something(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef
                  | ast.ClassDef | ast.Pass):
        return False
    if isinstance(statement, ast.Expr):  # only a docstring may stand alone
        return not (isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str))
    if isinstance(statement, ast.Assign):
        return not all(isinstance(target, ast.Name | ast.Tuple) for target in statement.targets)
    if isinstance(statement, ast.AnnAssign):
        return not isinstance(statement.target, ast.Name)
    return True  # loops, with, augmented assignment, del…


def import_time_work(module: Module, root: Path = ROOT) -> list[str]:
    tree = ast.parse(module.path.read_text(), str(module.path))
    return [f"{module.path.relative_to(root)}:{statement.lineno}: module-level "
            f"{type(statement).__name__} does something when the module is imported"
            for statement in _module_level(tree.body) if _does_something(statement)]


def check(root: Path = ROOT, show_graph: bool = False) -> list[str]:
    known = modules(root)  # sorted by path, so problems come in a stable order
    graph = {name: {target for target in imports_of(module, known) if not allowed(name, target)}
             for name, module in known.items()}
    problems: list[str] = []
    for name in sorted(graph):
        layer = layer_of(name)
        if layer is None:
            problems.append(f"{name}: in no layer of scripts/import_graph.py (add it to LAYERS)")
            continue
        if show_graph:
            print(f"[{layer:2}] {name} -> {', '.join(sorted(graph[name])) or '-'}")
        for target in sorted(graph[name]):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer < layer:
                problems.append(f"upward import: {name} ({LAYERS[layer][0]}) imports {target} "
                                f"({LAYERS[target_layer][0]})")
    problems += [f"import cycle: {' -> '.join(component)}" for component in cycles(graph)]
    for module in known.values():
        problems += import_time_work(module, root)
    edges = sum(len(targets) for targets in graph.values())
    print(f"import graph of {PACKAGE}/: {len(graph)} modules, {edges} imports, {len(LAYERS)} layers: "
          f"{len(problems)} problem(s)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", action="store_true", help="print every module with its layer and imports")
    args = parser.parse_args()
    problems = check(show_graph=args.graph)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
