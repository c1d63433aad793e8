"""Pipeline-only value checks for params fields, on top of trainer.checks (see its docstring).

A field declares one with `field(default=..., metadata=scheduler())` like any trainer.checks
helper, and its dataclass's `__post_init__` runs `check_fields(self, "section")`. Registries
(dataset adapters) are looked up by module name at check time, not imported here: they import
pipeline.core.params themselves, and params must stay cheap to load.

Example, the caption section (one line per field, one `__post_init__` per dataclass):

    backend: str = field(default="provided", metadata=pc.caption_backend())
    max_new_tokens: int = field(default=30, metadata=at_least(1))
    device: str = field(default="auto", metadata=device())

    def __post_init__(self) -> None:
        check_fields(self, "caption.blip2")  # its place in params.yaml

load_params then reports `params.yaml: caption.blip2.max_new_tokens: 0 is out of range;
allowed: max_new_tokens >= 1` (strict.from_mapping adds the path it is at, the file in front).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import string
from collections.abc import Mapping

from trainer.checks import Check, check_value, matches, satisfies

TEMPLATE_FIELDS = ("caption", "modification")
# An adapter module's constant that restricts a prepare key, e.g. fashioniq.CATEGORIES.
DATASET_CHOICES = {"category": "CATEGORIES", "protocol": "PROTOCOLS"}


def scheduler() -> Mapping[str, Check]:
    """Field metadata: parallel.scheduler, local | sync | tcp://HOST:PORT (or tls://)."""
    return matches(r"local|sync|(tcp|tls)://[^\s/]+:\d{1,5}", "local, sync or tcp://HOST:PORT")


def template_problem(template: str) -> str | None:
    """Why `template` cannot make the text query, or None when it can."""
    try:
        template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x"))
    except (KeyError, IndexError, ValueError) as err:
        return f"it is not a valid template ({err!r})"
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    missing = [name for name in TEMPLATE_FIELDS if name not in fields]
    return f"it lacks {{{missing[0]}}}" if missing else None


def check_template(template: str) -> None:
    """Raise ValueError unless `template` uses {caption} and {modification} and nothing else."""
    problem = template_problem(template)
    if problem is not None:
        raise ValueError(
            f"render.text_template {template!r}: {problem}; use {{caption}} and "
            f"{{modification}} only, and double any literal braces"
        )


def text_template() -> Mapping[str, Check]:
    """Field metadata: a str.format template with both {caption} and {modification}."""
    return satisfies(
        lambda t: template_problem(t) is None,
        "a template using {caption} and {modification} only (double literal braces)",
    )


def caption_backend() -> Mapping[str, Check]:
    """Field metadata: caption.backend names a backend in pipeline.captioners.CAPTIONERS."""
    # That package's __init__ imports nothing, so this stays cheap.
    from pipeline.captioners import CAPTIONERS

    return satisfies(lambda name: name in CAPTIONERS, f"one of {sorted(CAPTIONERS)}",
                     "is not a caption backend")


def _adapters() -> Mapping[str, object]:
    # Looked up, not imported at the top: pipeline.datasets imports this package's params.
    return importlib.import_module("pipeline.datasets").ADAPTERS


def dataset() -> Mapping[str, Check]:
    """Field metadata: prepare.dataset names an adapter registered in pipeline.datasets."""
    return satisfies(
        lambda name: name in _adapters(),
        "a dataset adapter registered in pipeline.datasets.ADAPTERS",
        "is not a registered dataset",
    )


def check_dataset_choices(section: str, dataset_name: str, values: Mapping[str, object]) -> None:
    """Check prepare keys (category, protocol) the dataset's adapter module restricts."""
    if all(values.get(key) is None for key in DATASET_CHOICES):
        return  # nothing set: the adapter says what it needs when it runs
    module_name = f"pipeline.datasets.{dataset_name}"
    if not re.fullmatch(r"\w+", dataset_name) or importlib.util.find_spec(module_name) is None:
        return  # an adapter registered at run time: no module constants to read
    module = importlib.import_module(module_name)
    for key, constant in DATASET_CHOICES.items():
        choices = getattr(module, constant, None)
        if choices is not None:
            allowed = f"one of {list(choices)} for dataset {dataset_name!r}"
            check = Check(lambda v, c=tuple(choices): v in c, allowed, "is not valid")
            check_value(section, key, values.get(key), check)
