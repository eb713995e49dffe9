"""Loads the `datasets/*.py` scripts (a folder of scripts, not a package) for the tests."""

import importlib.util
import pathlib

DATASETS = pathlib.Path(__file__).resolve().parents[2] / "datasets"


def load_script(name):
    """Returns the module of `datasets/<name>.py`."""
    spec = importlib.util.spec_from_file_location(f"datasets_{name}", DATASETS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
