"""`dqu faults`: every reliability fault we drill, run against a scratch tiny dataset.

Each fault copies a small demo-like dataset (demo drawings and phrasings, a few dozen triplets)
into a temp folder, breaks it in one way, and drives the real stage `run()` functions, the real
`dqu` app (handed in by the caller), or a real `dqu` subprocess where it has to be killed.
What "survived" means:

- a bad record: with on_bad_record=fail the stage stops with an error naming the record or file
  and the fix; with skip every stage completes and its report.json counts and lists it
  (n_in = n_out + n_skipped);
- odd but valid data (image modes, EXIF, emoji, RTL, 10,000 characters) flows through every
  stage with nothing skipped or altered;
- bad params are refused before any output exists;
- a stage or training run killed with SIGKILL and rerun ends byte-identical to an uninterrupted
  run (reusing what was finished);
- two clean runs of every pre-train stage give identical bytes; nothing unpickles untrusted data.

Modules: harness (results, registry, checks), scratch (the dataset), one module per fault
family (images, records, params, kills, safety; imported here in the order `dqu faults`
prints them) and runner.
"""

# The family modules register their faults on import, so this order is the printed order.
# isort: off
from devkit.faults import images
from devkit.faults import records
from devkit.faults import params
from devkit.faults import kills
from devkit.faults import safety

# isort: on
from devkit.faults.harness import (
    FAULTS,
    FaultResult,
    NotSurvived,
    expect,
    fails_clearly,
    fault,
    file_hashes,
    victim,
)
from devkit.faults.images import ODD_IMAGES
from devkit.faults.records import ODD_TEXTS, odd_texts
from devkit.faults.runner import run_faults
from devkit.faults.safety import no_network, unsafe_loading
from devkit.faults.scratch import (
    PRE_TRAIN,
    REPO,
    Scratch,
    read_report,
    registered_adapter,
    write_base_dataset,
)

FAMILIES = (images, records, params, kills, safety)

__all__ = [
    "FAMILIES",
    "FAULTS",
    "ODD_IMAGES",
    "ODD_TEXTS",
    "PRE_TRAIN",
    "REPO",
    "FaultResult",
    "NotSurvived",
    "Scratch",
    "expect",
    "fails_clearly",
    "fault",
    "file_hashes",
    "no_network",
    "odd_texts",
    "read_report",
    "registered_adapter",
    "run_faults",
    "unsafe_loading",
    "victim",
    "write_base_dataset",
]
