"""The layout's promises: dvc.yaml deps cover every import, no cycles, short functions,
and developer tools (devkit) never reached from product code but by `dqu faults`."""

from __future__ import annotations

import ast

import yaml

from devkit.deps import needed_files
from devkit.imports import (
    cycles,
    direct_imports,
    module_file,
    project_modules,
)
from tests.factories import REPO

MAX_FUNCTION_LINES = 80
STAGE_FOLDER = "pipeline.stages"


def _stage_deps() -> dict[str, list[str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, spec in stages.items():
        spec = spec.get("do", spec)
        deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]
        out[name] = [d.rstrip("/") for d in deps if not d.startswith("artifacts")]
    return out


def missing_deps() -> dict[str, list[str]]:
    """For each stage, the project files its code can import that dvc.yaml does not list."""
    missing = {}
    for stage, deps in _stage_deps().items():
        uncovered = sorted(f for f in needed_files(stage)
                           if not any(f == d or f.startswith(d + "/") for d in deps))
        if uncovered:
            missing[stage] = uncovered
    return missing


def test_every_stage_has_its_module() -> None:
    for stage in _stage_deps():
        assert module_file(f"{STAGE_FOLDER}.{stage}"), f"no pipeline/stages/{stage}.py"
        assert f"pipeline/stages/{stage}.py" in _stage_deps()[stage], stage


def test_dvc_deps_cover_every_module_a_stage_imports() -> None:
    assert missing_deps() == {}, "add these to the stage's deps in dvc.yaml"


def test_dvc_deps_name_files_that_exist() -> None:
    for stage, deps in _stage_deps().items():
        for dep in deps:
            assert (REPO / dep).exists(), f"{stage}: dvc.yaml dep {dep} does not exist"


def test_no_import_cycles() -> None:
    assert cycles(project_modules(("pipeline", "trainer"))) == []


def test_trainer_never_imports_pipeline_or_devkit() -> None:
    for name in project_modules(("trainer",)):
        bad = sorted(m for m in direct_imports(name) if not m.startswith("trainer"))
        assert not bad, f"{name} imports {bad}: dependencies point pipeline -> trainer"


def test_product_code_never_imports_devkit_or_test_runners() -> None:
    for name in project_modules(("pipeline", "trainer")):
        path = module_file(name)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for imported in names:
                runner = imported.split(".")[0] == "pytest" or imported in (
                    "typer.testing", "click.testing", "unittest.mock")
                assert not runner, f"{path}: imports the test runner {imported}"
                if imported.split(".")[0] == "devkit":
                    # The one allowed door: the `dqu faults` command, imported on use.
                    assert name == "pipeline.cli", f"{path}: product code imports {imported}"


def test_no_long_functions() -> None:
    long = []
    for pkg in ("pipeline", "trainer"):
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} {lines}")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines"


def _reruns_after(param: str) -> set[str]:
    """dvc.yaml stages (a foreach stage counts once) that rerun when `param` changes.

    A stage reruns when it lists the param (or its section), or when it depends on a path
    another rerunning stage writes (at, inside or above that output).
    """
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    spec = {name: stage.get("do", stage) for name, stage in stages.items()}

    def paths(entries: list) -> list[str]:
        out = []
        for entry in entries or []:
            name = next(iter(entry)) if isinstance(entry, dict) else entry
            out.append(name.split("/${item}")[0])
        return out

    outs = {name: paths(s.get("outs", [])) + paths(s.get("metrics", [])) + paths(s.get("plots", []))
            for name, s in spec.items()}
    section = param.split(".")[0]
    rerun = {name for name, s in spec.items()
             if any(p in (param, section) for p in paths(s.get("params", [])))}
    grew = True
    while grew:
        grew = False
        for name, s in spec.items():
            if name in rerun:
                continue
            written = [o for r in rerun for o in outs[r]]
            if any(d == o or d.startswith(o + "/") or o.startswith(d + "/")
                   for d in paths(s.get("deps", [])) for o in written):
                rerun.add(name)
                grew = True
    return rerun


def test_readme_names_the_stages_a_train_param_reruns() -> None:
    rerun = _reruns_after("train.lr")
    assert rerun == {"train", "evaluate", "index", "casestudy"}
    line = next(line for line in (REPO / "README.md").read_text().splitlines()
                if line.startswith("dvc exp run -S train.lr="))
    assert all(name in line for name in rerun), line
