"""`python -m devkit.faults.child ARGV`: `dqu ARGV` in a child process that knows the scratch
dataset adapter, which params name-check at load time (prepare.dataset)."""

from __future__ import annotations

import runpy

from devkit.faults.scratch import registered_adapter

if __name__ == "__main__":
    with registered_adapter():
        # Run as a module, not imported: devkit never imports pipeline.cli (which imports it).
        runpy.run_module("pipeline.cli", run_name="__main__", alter_sys=True)
