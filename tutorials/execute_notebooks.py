"""Execute the tutorial notebooks in place, keeping their outputs (for the documentation).

The committed notebooks carry the outputs of a full run (`KERAS_FACE_FAST` unset), which
the documentation site shows. Run this after editing a notebook:

    python tutorials/execute_notebooks.py                 # every notebook, full run
    python tutorials/execute_notebooks.py 01 03           # the notebooks whose names start so
    KERAS_FACE_FAST=1 python tutorials/execute_notebooks.py --check   # fast, do not save

TensorFlow's start-up messages (CUDA probing, oneDNN notices) and tf.distribute's INFO
lines are removed from the saved
stderr outputs: they describe the machine that ran the notebook, not the tutorial.
"""

import argparse
import pathlib
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent

_MACHINE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\).*"
    r"|[IWE]\d{4} [\d:. ]+\d+ \S+\.(cc|h):\d+\].*"
    r"|.*oneDNN custom operations are on.*"
    r"|.*rebuild TensorFlow with the appropriate compiler flags.*"
    r"|.*This TensorFlow binary is optimized to use available CPU instructions.*"
    r"|INFO:tensorflow:.*)$"
)


def strip_machine_noise(notebook):
    """Drop TensorFlow's start-up and INFO log lines from the stream outputs (empty ones too)."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                lines = [
                    line
                    for line in output.text.splitlines(keepends=True)
                    if not _MACHINE_NOISE.match(line.rstrip("\n"))
                ]
                if not "".join(lines).strip():
                    continue
                output.text = "".join(lines)
            outputs.append(output)
        cell.outputs = outputs
    return notebook


def execute(path, timeout=3600, save=True):
    """Run one notebook top to bottom (in its folder); return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if save:
        nbformat.write(strip_machine_noise(notebook), path)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks starting with these")
    parser.add_argument("--check", action="store_true", help="execute without saving")
    args = parser.parse_args(argv)
    paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in args.prefixes)]
    for path in paths:
        seconds = execute(path, save=not args.check)
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
