"""The layout's rules, checked from source: no import circle, components/ never imports flows/,
small modules, DVC deps that cover every file a stage runs (so `dvc repro` sees code changes), and
tests findable by module (tests/<package>/test_<module>*.py, shared code in tests/support/)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from tests.support.import_graph import closure, find_cycle, graph
from tests.support.layout import OTHER_FOLDERS, cross_imports, misnamed, misplaced

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400
# Argued exceptions: a module longer than the limit for a reason, with its own limit.
LONGER = {
    # The RL loop read top to bottom (CleanRL-style): every step of an iteration, the run, checkpoints and
    # the verified-improvement guard's restore hook act on the same optimizer, sampler, PIPO and probe
    # state; splitting them into mixins would hide what the loop depends on (the guard's decision and
    # state are already their own module, components/rl/guard.py).
    "components/rl/trainer.py": 450,
}
MODULES, EDGES = graph(ROOT)
# a `foreach` stage (one per item of a list param) is checked through its template
DVC = {name: spec.get("do", spec) for name, spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}


def test_no_import_circle():
    cycle = find_cycle(EDGES)
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


def test_components_never_import_flows():
    offenders = {m: sorted(n for n in deps if n.split(".")[0] == "flows")
                 for m, deps in EDGES.items() if m.split(".")[0] == "components"}
    assert not {m: d for m, d in offenders.items() if d}


def test_no_module_over_the_size_limit():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > LONGER.get(str(p.relative_to(ROOT)), MAX_MODULE_LINES)}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def stage_entry_modules(stage: str) -> list[str]:
    """`python -m components.cli STAGE` runs the cli module, which imports components.stages.STAGE;
    `python -m components.cli COMMAND ...` imports the module that components.cli.COMMANDS names."""
    from components.cli import COMMANDS

    argv = shlex.split(DVC[stage]["cmd"])
    assert argv[:2] == ["python", "-m"], f"{stage}: unexpected cmd {DVC[stage]['cmd']!r}"
    command = argv[3] if len(argv) > 3 else None
    entries = [argv[2], COMMANDS[command][0] if command in COMMANDS else f"components.stages.{stage}"]
    missing = [m for m in entries if m not in MODULES]
    assert not missing, f"{stage}: entry modules {missing} do not exist"
    return entries


@pytest.mark.parametrize("stage", sorted(DVC))
def test_stage_deps_cover_every_module_it_imports(stage):
    deps = [ROOT / d for d in DVC[stage].get("deps", [])]
    files = {MODULES[m] for m in closure(stage_entry_modules(stage), EDGES)}
    uncovered = sorted(str(f.relative_to(ROOT)) for f in files
                       if not any(f == d or d in f.parents for d in deps))
    assert not uncovered, f"dvc.yaml stage {stage!r} runs these files but does not depend on them: {uncovered}"


def test_the_graph_sees_a_lazy_import(tmp_path):
    """The checker must see imports inside functions (the stages import lazily)."""
    pkg = tmp_path / "components"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from components import b\n")
    (pkg / "b.py").write_text("from components.a import f\n")
    (tmp_path / "flows").mkdir()
    modules, edges = graph(tmp_path)
    assert edges["components.a"] == {"components", "components.b"}
    assert find_cycle(edges) in (["components.a", "components.b", "components.a"],
                                 ["components.b", "components.a", "components.b"])
    assert closure(["components.b"], edges) == {"components", "components.a", "components.b"}


def test_every_test_file_lives_in_the_folder_of_what_it_tests():
    """tests/<folder>/test_*.py with folder a components package or one of OTHER_FOLDERS (none directly in
    tests/); any other Python file is a shared helper, in tests/support/."""
    problems = misplaced(ROOT)
    assert not problems, ("test files out of place (folders: the components packages and "
                          f"{', '.join(sorted(OTHER_FOLDERS))}):\n  " + "\n  ".join(problems))


def test_a_package_folders_test_files_are_named_after_one_of_its_modules():
    """In tests/<pkg>/, test_<m>.py or test_<m>_<aspect>.py where <m> is a module or subpackage of
    components/<pkg> (the longest that fits: test_score_hostile.py tests score)."""
    problems = misnamed(ROOT)
    assert not problems, "test files not named after a module of their package:\n  " + "\n  ".join(problems)


def test_no_test_file_imports_another_test_file():
    """What tests share is imported from tests.support.* (or is a conftest.py fixture), never from a test file."""
    problems = cross_imports(ROOT)
    assert not problems, "imports of test files:\n  " + "\n  ".join(problems)
