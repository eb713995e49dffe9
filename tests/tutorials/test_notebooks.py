"""The tutorial notebooks: committed with the outputs of a full run, executable in fast mode.

`test_notebook_runs_in_fast_mode` executes every notebook top to bottom with
`KERAS_FACE_FAST=1` (smaller data, fewer epochs), as continuous integration does (about
four minutes for the six on an idle 2-core machine). The other tests only read the
committed files: every code cell was executed, in order, by a full (not fast) run,
without errors, and the notebook draws its figures and stays small.
"""

import pathlib
import time

import pytest

nbformat = pytest.importorskip("nbformat")

TUTORIALS = pathlib.Path(__file__).resolve().parents[2] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = (
    "01_margin_heads",
    "02_decision_boundaries",
    "03_training_a_face_model",
    "04_feature_norm_and_quality",
    "05_verification_protocol",
    "06_curricular_face",
    "07_large_scale_classification",
    "08_spherical_confidence",
    "09_distillation",
    "10_age_invariant",
    "11_occlusion_adversarial",
)
# The committed notebooks are what the site shows: keep the repository light.
MAX_NOTEBOOK_BYTES = 1_000_000
# Each notebook must run in fast mode within this budget on a 2-core CPU machine.
FAST_MODE_SECONDS = 300


def _outputs_text(notebook):
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif "text/plain" in output.get("data", {}):
                texts.append(output["data"]["text/plain"])
    return "\n".join(texts)


def _count_images(notebook):
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def test_every_tutorial_is_present():
    assert [path.stem for path in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_committed_notebook_has_the_outputs_of_a_full_run(path):
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    markdown_cells = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    # A prose introduction (the title first) and a conclusion.
    assert notebook.cells[0].cell_type == "markdown"
    assert notebook.cells[0].source.startswith("# ")
    assert "## Conclusion" in markdown_cells[-1].source
    # Executed top to bottom in one session.
    counts = [cell.execution_count for cell in code_cells]
    assert counts == list(range(1, len(code_cells) + 1))
    errors = [
        output for cell in code_cells for output in cell.outputs if output.output_type == "error"
    ]
    assert errors == []
    text = _outputs_text(notebook)
    assert "fast mode: False" in text
    assert "fast mode: True" not in text
    assert _count_images(notebook) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient

    # The kernel inherits this process's environment.
    monkeypatch.setenv("KERAS_FACE_FAST", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=FAST_MODE_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s in fast mode")
    assert "fast mode: True" in _outputs_text(notebook)
    assert _count_images(notebook) >= 3
    assert seconds < FAST_MODE_SECONDS
