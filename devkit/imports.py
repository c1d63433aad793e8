"""The project's import graph, read statically (lazy imports inside functions included).

Used by the structure tests and by `python -m devkit.deps`, which prints the dvc.yaml deps
each stage needs."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PACKAGES = ("pipeline", "trainer", "devkit")


def module_file(name: str) -> Path | None:
    """The file of project module `name` (a module or a package's __init__), else None."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    """Dotted name of a project file."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Every module of the given top-level packages."""
    return sorted(module_name(p) for pkg in packages for p in (REPO / pkg).rglob("*.py"))


@cache
def direct_imports(name: str) -> frozenset[str]:
    """Project modules that module `name` imports anywhere in its body."""
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from pkg import mod` imports the submodule; the package itself counts only when
            # a name is one of its attributes (its __init__ is no design edge otherwise).
            subs = {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(base)
    return frozenset(
        m for m in found if m.split(".")[0] in PACKAGES and module_file(m) and m != name
    )


def with_packages(name: str) -> set[str]:
    """`name` and the packages above it, whose __init__ runs when it is imported."""
    parts = name.split(".")
    prefixes = (".".join(parts[: i + 1]) for i in range(len(parts)))
    return {prefix for prefix in prefixes if module_file(prefix)}


def is_docstring_only(name: str) -> bool:
    """A module (typically a package __init__) holding nothing but its docstring."""
    body = ast.parse(module_file(name).read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def closure(start: set[str]) -> set[str]:
    """Every project module that importing `start` can load."""
    seen: set[str] = set()
    todo = [m for name in start for m in with_packages(name)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(m for dep in direct_imports(name) for m in with_packages(dep))
    return seen


def cycles(modules: list[str]) -> list[tuple[str, str]]:
    """Pairs of modules that reach each other through imports (package inits left out)."""
    graph = {m: {d for d in direct_imports(m) if d in modules} for m in modules}

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt == b:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    def nested(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    return sorted({tuple(sorted((a, b))) for a in graph for b in graph[a]
                   if not nested(a, b) and reaches(b, a)})
