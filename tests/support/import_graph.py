"""The project's own import graph, read from source with `ast` (nothing is imported or executed).

Every import counts, module-level or inside a function: a lazy import still means the importer
runs that code, so it belongs in the stage's DVC deps and it can still close an import circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("components", "flows")


def module_files(root: Path) -> dict[str, Path]:
    """{dotted module name: file} for every .py file under the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that `name` (a module or a name inside one) lives in, if any."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """Project modules that `module` imports by name (parent packages are added by `closure`)."""
    path = modules[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import name` imports the submodule pkg.name when there is one
            targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None:
                found.add(resolved)
    found.discard(module)
    return found


def graph(root: Path) -> tuple[dict[str, Path], dict[str, set[str]]]:
    modules = module_files(root)
    return modules, {m: imports_of(m, modules) for m in modules}


def closure(starts: list[str], edges: dict[str, set[str]]) -> set[str]:
    """Every module that runs when `starts` are imported: their imports, transitively, and the
    parent packages of each (importing a.b.c runs a/__init__.py and a/b/__init__.py first)."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(edges.get(m, ()))
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in edges)
    return seen


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None
