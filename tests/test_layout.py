"""The layout rules of docs/layout.md, read from the code with ``ast`` (no module is imported).

- ``ingest`` imports ``vecstore`` (its core), never ``query`` or the CLI;
- ``query`` imports ``vecstore``, and ``ingest`` only through ``query/gateway.py`` (to read and embed a new
  file);
- the core of ``vecstore`` (everything but ``vecstore/cli/``) imports neither ``ingest`` nor ``query``,
  and knows nothing of torch or FITS;
- ``vecstore/cli/`` (the ``vec`` command and the demo) is the one place that imports all three;
- no import cycle between packages, nor between modules at import time.

Every import counts, including those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vecstore", "ingest", "query")
CLI = "vecstore.cli"
GATEWAY = "query.gateway"
# Libraries the core of vecstore must not know (the store holds vectors, not images or models).
NOT_IN_CORE = ("torch", "torchvision", "timm", "fitsio", "sep", "ingest", "query")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (or a name inside a module, for `from m import name`)
    line: int
    at_import_time: bool  # at module level (not inside a function)

    def where(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str, package_init: bool, level: int, name: str | None) -> str:
    """The dotted name a relative ``from ... import`` refers to."""
    if level == 0:
        return name or ""
    base = module.split(".") if package_init else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _deferred_lines(tree: ast.AST) -> set[int]:
    """Line numbers of import statements that do not run when the module is imported: inside a function
    (they run when it is called) or under ``if TYPE_CHECKING:`` (they never run)."""
    deferred = set()
    for node in ast.walk(tree):
        in_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        type_checking = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        if in_function or type_checking:
            deferred |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return deferred


def imports_of(root: Path, path: Path, known: set[str]) -> list[Import]:
    """Every import of one file; ``from pkg import mod`` counts as importing ``pkg.mod`` when that is a
    module of the tree."""
    module = module_name(root, path)
    tree = ast.parse(path.read_text(), filename=str(path))
    deferred = _deferred_lines(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path.name == "__init__.py", node.level, node.module)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found += [Import(module, name, node.lineno, node.lineno not in deferred) for name in set(names)]
    return found


def tree_files(root: Path) -> list[Path]:
    return [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]


def tree_modules(root: Path) -> set[str]:
    return {module_name(root, p) for p in tree_files(root)}


def tree_imports(root: Path) -> list[Import]:
    known = tree_modules(root)
    return [i for p in tree_files(root) for i in imports_of(root, p, known)]


def package_of(module: str) -> str | None:
    """``vecstore.cli`` for the CLI skin, else the top-level package of vec's three; None for the rest."""
    if module == CLI or module.startswith(CLI + "."):
        return CLI
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def _top(module: str) -> str:
    return module.split(".")[0]


def broken_rules(imports: list[Import]) -> list[str]:
    broken = []
    for i in imports:
        source, target = package_of(i.importer), package_of(i.imported)
        if source == CLI:
            continue
        if source == "vecstore" and _top(i.imported) in NOT_IN_CORE:
            broken.append(f"{i.where()}: the core of vecstore imports neither ingest, query nor torch/FITS")
        elif target == CLI:
            broken.append(f"{i.where()}: only `vec` itself imports the CLI skin")
        elif source == "ingest" and target == "query":
            broken.append(f"{i.where()}: ingest never imports query")
        elif source == "query" and target == "ingest" and i.importer != GATEWAY:
            broken.append(f"{i.where()}: query reaches ingest only through {GATEWAY}")
    return broken


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph (as a path that ends where it starts), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, [*path, nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def package_graph(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for i in imports:
        source, target = package_of(i.importer), package_of(i.imported)
        if target and source != target:
            edges.setdefault(source, set()).add(target)
    return edges


def module_graph(imports: list[Import], known: set[str]) -> dict[str, set[str]]:
    """Module -> modules it imports when it is imported (module-level statements only)."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        if i.at_import_time and i.imported in known and i.imported != i.importer:
            edges.setdefault(i.importer, set()).add(i.imported)
    return edges


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ----------------------------------------------------------------------------------------------- the tree
IMPORTS = tree_imports(ROOT)
KNOWN = tree_modules(ROOT)


def test_imports_follow_the_layout_rules():
    assert broken_rules(IMPORTS) == []


def test_no_cycle_between_packages():
    assert find_cycle(package_graph(IMPORTS)) is None


def test_no_cycle_between_modules_at_import_time():
    assert find_cycle(module_graph(IMPORTS, KNOWN)) is None


def test_the_gateway_is_what_query_uses_of_ingest():
    assert any(i.importer == GATEWAY and package_of(i.imported) == "ingest" for i in IMPORTS)


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {module_name(ROOT, p) for package in PACKAGES for p in (ROOT / package).rglob("__init__.py")}
    assert listed - {"vecstore.configs"} == on_disk


# ----------------------------------------------------------------------------------------------- the checker
def test_the_checker_names_each_broken_rule(tmp_path):
    _write(
        tmp_path,
        {
            "vecstore/__init__.py": "",
            "vecstore/store.py": "import torch\nfrom query import train\n",
            "vecstore/cli/__init__.py": "import ingest.reader, query.train\n",
            "ingest/__init__.py": "",
            "ingest/reader.py": "def f():\n    from query.train import fit\n",
            "ingest/engine.py": "from vecstore.cli import app\n",
            "query/__init__.py": "",
            "query/train.py": "from . import gateway\nfrom ingest import reader\n",
            "query/gateway.py": "from ingest.reader import read\n",
        },
    )
    broken = broken_rules(tree_imports(tmp_path))
    assert len(broken) == 5, broken
    assert sum("vecstore.store" in b for b in broken) == 2  # torch and query
    assert any("ingest.reader (line 2) imports query.train" in b for b in broken)  # a lazy import counts
    assert any(b.startswith("ingest.engine") and "CLI" in b for b in broken)
    assert any(b.startswith("query.train") and "ingest.reader" in b for b in broken)  # not the gateway's


def test_the_checker_finds_cycles(tmp_path):
    _write(
        tmp_path / "packages",
        {
            "vecstore/__init__.py": "",
            "ingest/__init__.py": "",
            "ingest/reader.py": "def f():\n    from query import x\n",
            "query/__init__.py": "",
            "query/x.py": "import ingest.reader\n",
        },
    )
    imports = tree_imports(tmp_path / "packages")
    assert find_cycle(package_graph(imports)) in (["ingest", "query", "ingest"], ["query", "ingest", "query"])
    known = tree_modules(tmp_path / "packages")
    assert find_cycle(module_graph(imports, known)) is None  # f imports x only when called

    modules = {
        "vecstore/__init__.py": "",
        "vecstore/a.py": "from vecstore import b\n",
        "vecstore/b.py": "from typing import TYPE_CHECKING\nfrom vecstore.c import x\n",
        "vecstore/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vecstore.a\n",
        "ingest/__init__.py": "",
        "query/__init__.py": "",
    }
    _write(tmp_path / "modules", modules)
    imports, known = tree_imports(tmp_path / "modules"), tree_modules(tmp_path / "modules")
    assert find_cycle(module_graph(imports, known)) is None  # a type-checking import never runs
    _write(tmp_path / "modules", {"vecstore/c.py": "import vecstore.a\n"})
    imports = tree_imports(tmp_path / "modules")
    cycle = ["vecstore.a", "vecstore.b", "vecstore.c", "vecstore.a"]
    assert find_cycle(module_graph(imports, known)) == cycle
