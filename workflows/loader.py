"""Load a workflow file and find the ``Workflow`` it declares."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from workflows.errors import WorkflowError
from workflows.workflow import Workflow


def load_workflow(path: Path) -> Workflow:
    """Import ``path`` as a module and return its one ``Workflow`` object.

    The file's directory goes first on ``sys.path`` so a workflow can import
    its neighbours, as it would when run as a script.
    """
    if not path.is_file():
        raise WorkflowError(f"workflow file not found: {path}")
    module_name = f"_workflow_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise WorkflowError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    found = [value for value in vars(module).values() if isinstance(value, Workflow)]
    if len(found) != 1:
        raise WorkflowError(
            f"{path} must declare exactly one Workflow(...) at module level; found {len(found)}"
        )
    return found[0]
