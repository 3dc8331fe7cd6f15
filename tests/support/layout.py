"""Where the tests live, read from the file tree and from source with `ast` (nothing is imported).

tests/<folder>/ holds the tests of one thing: a package of components/ (tests/rl/ for components/rl/), or
one of OTHER_FOLDERS. In a package's folder, test_<m>.py or test_<m>_<aspect>.py tests its module or
subpackage <m>. Helpers a test file shares live in tests/support/ (or a conftest.py); a test file imports
no other test file.
"""

from __future__ import annotations

import ast
from pathlib import Path

# Folders that are not a components package: the flows, end-to-end runs of the real services, rules of
# the whole repository, the command line (components/cli.py), the suites that need an environment of
# their own (vLLM, the TRL comparison), and what tests share.
OTHER_FOLDERS = {
    "flows": "tests of flows/",
    "e2e": "end-to-end tests that start real services (Prefect server, MLflow, DVC)",
    "project": "repository-wide rules (layout, DVC, output)",
    "cli": "tests of components/cli.py (test_cli*.py)",
    "vllm": "the vLLM suite (its own environment)",
    "bench": "the TRL comparison's smoke test (its own environment)",
    "support": "helpers, fixtures and scripts the tests share (no test_*.py)",
}
FOLDER_FILES = ("__init__.py", "conftest.py")


def packages(root: Path) -> dict[str, set[str]]:
    """{components package: names of its modules and subpackages}; components/cli.py counts as package cli."""
    out = {"cli": {"cli"}}
    for pkg in sorted(p for p in (root / "components").iterdir() if (p / "__init__.py").is_file()):
        out[pkg.name] = ({p.stem for p in pkg.glob("*.py") if p.stem not in ("__init__", "__main__")}
                         | {p.name for p in pkg.iterdir() if (p / "__init__.py").is_file()})
    return out


def module_under_test(stem: str, modules: set[str]) -> str | None:
    """The module a file named `stem` (test_score_hostile) tests: the longest module name m such that the
    stem is test_<m> or starts with test_<m>_ (score); None when no module matches."""
    name = stem.removeprefix("test_")
    found = [m for m in modules if name == m or name.startswith(m + "_")]
    return max(found, key=len) if found else None


def misplaced(root: Path) -> list[str]:
    """Rule 1: test files only in tests/<folder>/ with folder a components package or one of OTHER_FOLDERS;
    other Python files only in tests/support/ (besides __init__.py and conftest.py)."""
    tests, allowed = root / "tests", set(packages(root)) | set(OTHER_FOLDERS)
    problems = []
    for path in sorted(tests.rglob("*.py")):
        rel = path.relative_to(root)
        parts = path.relative_to(tests).parts
        if "__pycache__" in parts:
            continue
        if len(parts) == 1:
            if path.name not in FOLDER_FILES:
                where = "tests/<folder>/ (a components package, or one of " + ", ".join(sorted(OTHER_FOLDERS)) + ")"
                problems.append(f"{rel}: directly in tests/; move it to "
                                f"{where if path.name.startswith('test_') else 'tests/support/'}")
        elif parts[0] not in allowed:
            problems.append(f"{rel}: tests/{parts[0]}/ is neither a components package nor one of "
                            f"{sorted(OTHER_FOLDERS)}")
        elif len(parts) > 2:
            problems.append(f"{rel}: in a subfolder of tests/{parts[0]}/; the folders are one level deep")
        elif parts[0] == "support" and path.name.startswith("test_"):
            problems.append(f"{rel}: a test file in tests/support/; move it to the folder of what it tests")
        elif parts[0] != "support" and not (path.name in FOLDER_FILES or path.name.startswith("test_")):
            problems.append(f"{rel}: a helper beside the tests; shared code lives in tests/support/")
    return problems


def misnamed(root: Path) -> list[str]:
    """Rule 2: in tests/<pkg>/ (a components package), each test file is test_<m>.py or test_<m>_<aspect>.py
    with <m> a module or subpackage of components/<pkg>."""
    problems = []
    for pkg, modules in packages(root).items():
        for path in sorted((root / "tests" / pkg).glob("test_*.py")):
            if module_under_test(path.stem, modules) is None:
                where = "components/cli.py" if pkg == "cli" else f"components/{pkg}/"
                problems.append(f"{path.relative_to(root)}: name it test_<m>.py or test_<m>_<aspect>.py with <m> a "
                                f"module of {where}: {sorted(modules)}")
    return problems


def _is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported(path: Path, tests: Path) -> set[str]:
    """Dotted modules `path` imports (`from tests import x` gives tests.x; relative imports resolved)."""
    package = ["tests", *path.relative_to(tests).parent.parts]  # a module's package, and an __init__.py's
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            submodules = [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module`
            found = [n for n in submodules if _is_module(tests.parent, n)]
            names.update(found or [base])
    return names


def cross_imports(root: Path) -> list[str]:
    """Rule 3: no Python file under tests/ imports a test module (or conftest.py); only tests.support.*."""
    tests, problems = root / "tests", []
    for path in sorted(tests.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        bad = sorted(n for n in _imported(path, tests)
                     if n.startswith("tests.") and not (n == "tests.support" or n.startswith("tests.support.")))
        if bad:
            problems.append(f"{path.relative_to(root)} imports {bad}; move what it shares to tests/support/")
    return problems
