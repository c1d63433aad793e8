"""`python -m devkit.deps`: the dvc.yaml deps each stage needs, from the static import graph.

A stage depends on its own module, the pipeline sub-packages it uses (as folders: core,
datasets, keyphrases, captioners), and the trainer modules it imports (as files, so a
trainer edit reruns only the stages that run that code; train takes the whole trainer folder,
the library it runs). What `dqu` imports at start-up counts for every stage;
pipeline/cli.py itself is left out: its commands only pass their arguments to a stage's run(),
and listing it would rerun every stage whenever any command is added.
"""

from __future__ import annotations

import ast
import sys

import yaml

from devkit.imports import REPO, closure, is_docstring_only, module_file

# Stages whose code is the trainer library itself (evaluate lists its files: it runs no training).
WHOLE_TRAINER = ("train",)
# Data files a module reads, which no import shows.
DATA_DEPS = {"trainer/models/clip.py": ("trainer/models/configs",),
             "pipeline/keyphrases/tagger.py": ("pipeline/resources/keyword_tagger.npz",)}


def cli_start_up() -> set[str]:
    """Project modules `dqu` imports before any command runs."""
    tree = ast.parse((REPO / "pipeline" / "cli.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if module_file(name)}


def needed_files(stage: str) -> set[str]:
    """Repository paths of every project module the stage's code can import."""
    modules = closure({f"pipeline.stages.{stage}"} | cli_start_up())
    return {
        str(module_file(m).relative_to(REPO)) for m in modules if not is_docstring_only(m)
    }


def deps_for(stage: str) -> list[str]:
    """The code deps dvc.yaml should list for `stage`."""
    needed = needed_files(stage)
    # A sub-package counts as a folder once one of its modules is used; a bare registry
    # __init__ (looked up by a params check) stays a file, so editing a backend reruns only
    # the stages that run it.
    used_folders = {
        "/".join(parts[:2])
        for parts in (path.split("/") for path in needed)
        if parts[0] == "pipeline" and len(parts) > 2 and parts[-1] != "__init__.py"
    }
    deps: set[str] = set()
    for path in needed:
        parts = path.split("/")
        if parts[0] == "trainer" and stage in WHOLE_TRAINER:
            deps.add("trainer")
        elif "/".join(parts[:2]) in used_folders and parts[1] != "stages":
            deps.add("/".join(parts[:2]))
        else:
            deps.add(path)
        if stage not in WHOLE_TRAINER:
            deps.update(DATA_DEPS.get(path, ()))
    return sorted(deps, key=lambda d: (not d.startswith("pipeline/stages"), d))


def main() -> int:
    """Print each stage's deps; exit 1 when dvc.yaml differs."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    differs = False
    for stage, spec in stages.items():
        spec = spec.get("do", spec)
        listed = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]
        code = [d for d in listed if not d.startswith("artifacts")]
        want = deps_for(stage)
        differs |= sorted(code) != sorted(want)
        print(f"{stage}:" + "".join(f"\n  - {d}" for d in want))
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
