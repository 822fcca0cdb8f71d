"""The layout's dependency rules (docs/architecture.md), read from every module's imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ledger", "projections", "api")
# The log's kernel, the backends, the errors and the domain rules: what the projections may use.
FOUNDATION = ("ledger.log", "ledger.backends", "ledger.errors", "ledger.rules")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of the three packages, and the modules it imports (relative imports resolved)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = module_name(path)
            base = name if path.name == "__init__.py" else name.rpartition(".")[0]
            imported, tree = set(), ast.parse(path.read_text())
            # Imports a type checker alone reads do not run, and so make no dependency.
            typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                           and getattr(node.test, "id", None) == "TYPE_CHECKING" for inner in ast.walk(node)}
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom):
                    source = node.module or ""
                    if node.level:
                        source = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1] + ([source] if source else []))
                    imported.add(source)
                    imported.update(f"{source}.{alias.name}" for alias in node.names)
            found[name] = imported
    return found


def within(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


IMPORTS = imports()


def test_the_ledger_never_imports_the_api():
    assert {name: sorted(i for i in imported if within(i, ("api",)))
            for name, imported in IMPORTS.items() if within(name, ("ledger",)) and within_any(imported, ("api",))} == {}


def within_any(imported: set[str], prefixes) -> bool:
    return any(within(module, prefixes) for module in imported)


def test_the_foundation_imports_nothing_above_it():
    above = ("projections", "api", "ledger.commands", "ledger.history", "ledger.cli", "ledger.database",
             "ledger.committer", "ledger.opening", "ledger.demo", "ledger.output")
    offending = {name: sorted(i for i in imported if within(i, above))
                 for name, imported in IMPORTS.items() if within(name, FOUNDATION)}
    assert {name: found for name, found in offending.items() if found} == {}


def test_projections_use_only_the_foundation_of_the_ledger():
    offending = {name: sorted(i for i in imported if within(i, ("ledger",)) and not within(i, FOUNDATION) and i != "ledger")
                 for name, imported in IMPORTS.items() if within(name, ("projections",))}
    assert {name: found for name, found in offending.items() if found} == {}


def test_only_the_sqlite_backend_imports_sqlite3():
    assert sorted(name for name, imported in IMPORTS.items()
                  if "sqlite3" in imported and not within(name, ("ledger.backends.sqlite",))) == []


def test_only_the_postgres_backend_imports_its_driver():
    assert sorted(name for name, imported in IMPORTS.items()
                  if any(within(i, ("psycopg", "psycopg_pool")) for i in imported)
                  and not within(name, ("ledger.backends.postgres",))) == []


def test_no_modules_import_each_other_in_a_circle():
    graph = {name: {i for i in imported if i in IMPORTS and i != name} for name, imported in IMPORTS.items()}
    # A package's __init__ re-exporting its own modules is not a circle of concepts.
    graph = {name: {i for i in targets if not (name == i.rpartition(".")[0])} for name, targets in graph.items()}
    state, circles = {}, []

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_says_what_it_is_for(package):
    undocumented = [module_name(path) for path in (ROOT / package).rglob("*.py")
                    if path.read_text().strip() and ast.get_docstring(ast.parse(path.read_text())) is None]
    assert undocumented == []
