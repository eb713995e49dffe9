"""The end of a run: its numbers (`collect_results`) and its folder (`write_run_folder`).

The run folder:

```
config.yaml                 the complete configuration used (written once the data loads)
embedding_model.keras       the trained embedding model (backbone), for deployment
models/last.keras           embedding model after the latest epoch
models/best.keras           embedding model of the best verification epoch
models/best.json            its score and epoch (read back when the run resumes)
logs/training_log.csv       per-epoch loss, accuracy, learning rate, verification
logs/tensorboard/           TensorBoard events
backup/                     step-level backups (rerun the same command to resume)
roc.png                     ROC of the final held-out / verification evaluation
training_curves.png         loss, training accuracy, learning rate, verification accuracy
results.json                everything above in numbers
```

Every file is written under a temporary name in the same folder and then renamed
(`keras_face.training.atomic_write`), so a run killed at any instant leaves each file
either as it was or complete.
"""

import csv
import json
import math
import os
import platform
import time

import numpy as np

from keras_face.evaluation import plot_roc
from keras_face.training.atomic_write import atomic_write
from keras_face.training.training_curves import plot_training_curves
from keras_face.training.training_data import HELDOUT_NAME

try:  # getrusage is POSIX only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None


def _machine():
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def collect_results(
    config, run, training_data, model, steps_per_epoch, fit_seconds, state, progress=True
):
    """The numbers of a trained run (the start of `results.json`), without verification.

    Also reports the reader's counts of decoded and skipped images (printed when some
    were skipped or `progress` is on).

    Args:
        config: dict. A validated configuration.
        run: `RunSetup`.
        training_data: `TrainingData`.
        model: the trained training model.
        steps_per_epoch: int.
        fit_seconds: float. Wall seconds of `fit`.
        state: dict or `None`. The backup state the run resumed from.
        progress: bool. Print the data counts. Defaults to `True`.

    Returns:
        dict with an empty `"verification"` entry (filled from `evaluate`).

    Example:
        ```python
        results = keras_face.training.collect_results(
            config, run, data, model, steps, seconds, state=None)
        ```
    """
    training = config["training"]
    epochs = training["epochs"]
    first_epoch = state["epoch"] if state else 0
    steps_trained = (epochs - first_epoch) * steps_per_epoch - (
        state["step_in_epoch"] if state else 0
    )
    backbone = model.embedding_model
    results = {
        "name": config["name"],
        "output_dir": run.output_dir,
        "backbone": backbone.name,
        "head": type(model.head).__name__,
        "parameters": int(backbone.count_params()),
        "num_classes": training_data.num_classes,
        "num_images": training_data.num_images,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "global_batch_size": run.global_batch,
        "replicas": int(run.strategy.num_replicas_in_sync),
        "strategy": type(run.strategy).__name__,
        "mixed_precision": training["mixed_precision"],
        "resumed_from": state,
        "fit_seconds": fit_seconds,
        "training_images_per_second": (
            steps_trained * run.global_batch / fit_seconds if steps_trained > 0 else None
        ),
        "machine": _machine(),
        "verification": {},
    }
    stats = training_data.stats
    if stats is not None:
        # Undecodable images were skipped and counted by the reader, never mislabelled.
        results["data"] = {
            "images_decoded": int(stats.delivered),
            "undecodable_skipped": int(stats.skipped),
            "undecodable_keys": [str(key) for key in stats.skipped_keys[:100]],
        }
        if stats.skipped or progress:
            print(f"Training data: {stats.summary()}")
    return results


def write_run_folder(run, config, results, embedding_model, summaries, started):
    """Save the embedding model, the history, the plots and `results.json`.

    Only the chief writes files; every process completes `results` with the history
    (chief), `wall_seconds` and `cpu_seconds`.

    Args:
        run: `RunSetup` (`output_dir`, `chief`).
        config: dict. A validated configuration.
        results: dict. From `collect_results`, with its `"verification"` filled;
            completed in place.
        embedding_model: `keras.Model` saved as `embedding_model.keras`.
        summaries: dict `{name: VerificationSummary}` (the ROC plot).
        started: float. `time.perf_counter()` at the start of the run.

    Returns:
        The completed `results` dict.

    Example:
        ```python
        keras_face.training.write_run_folder(run, config, results, backbone, summaries,
                                             started=time.perf_counter())
        ```
    """
    output_dir = run.output_dir
    if run.chief:
        with atomic_write(os.path.join(output_dir, "embedding_model.keras")) as temporary:
            embedding_model.save(temporary)
        history = read_history(os.path.join(output_dir, "logs", "training_log.csv"))
        results["history"] = {
            key: [_finite_or_none(value) for value in values] for key, values in history.items()
        }
        curves = {name: summary.result for name, summary in summaries.items()}
        _write_plots(output_dir, curves, history, config)
    results["wall_seconds"] = time.perf_counter() - started
    results["cpu_seconds"] = _cpu_seconds()
    if run.chief:
        with atomic_write(os.path.join(output_dir, "results.json")) as temporary:
            with open(temporary, "w") as file:
                json.dump(results, file, indent=2)
    return results


def read_history(csv_path):
    """Per-epoch columns of the CSV log (all epochs, also across resumes).

    Args:
        csv_path: str. The `logs/training_log.csv` of a run.

    Returns:
        dict `{column: [value per epoch]}` (`nan` where a value is missing); `{}` when
        the file does not exist.

    Example:
        ```python
        history = keras_face.training.read_history("runs/a/logs/training_log.csv")
        ```
    """
    if not os.path.exists(csv_path):
        return {}
    rows = {}
    with open(csv_path) as file:
        for row in csv.DictReader(file):
            rows[int(row["epoch"])] = row  # a resumed epoch overwrites its first attempt
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                history.setdefault(key, []).append(float("nan"))
    return history


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _cpu_seconds():
    """User + system CPU time of this process (all threads) so far, or None."""
    if resource is None:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _format_duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _write_plots(output_dir, curves, history, config):
    if curves:
        # FAR ticks down to the resolution of the smallest set (1 / impostor pairs).
        impostors = min(int(np.sum(~np.asarray(r["issame"], bool))) for r in curves.values())
        fars = tuple(
            far for far in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6) if far >= 1.0 / max(impostors, 1)
        )
        figure = plot_roc(
            curves if len(curves) > 1 else next(iter(curves.values())),
            fars=fars or (1e-1,),
            title=f"ROC ({config['name']})",
        )
        _save_figure(figure, os.path.join(output_dir, "roc.png"))
    if history:
        figure = plot_training_curves(history, title=config["name"])
        _save_figure(figure, os.path.join(output_dir, "training_curves.png"))


def _save_figure(figure, path):
    with atomic_write(path) as temporary:
        figure.savefig(temporary, dpi=120)


def summary_line(results, description=""):
    """The one-line summary printed at the end of `train`.

    Args:
        results: dict. What `train` returns.
        description: str. The verification data, in parentheses. Defaults to `""`.

    Example:
        ```python
        print(keras_face.training.summary_line(results))
        ```
    """
    parts = []
    for name, result in results["verification"].items():
        label = "held-out verification accuracy" if name == HELDOUT_NAME else f"{name} accuracy"
        parts.append(
            f"{label} {100 * result['accuracy']:.2f}% +- {100 * result['accuracy_std']:.2f}%"
        )
    scores = "; ".join(parts) if parts else "no verification set"
    where = f" ({description})" if description and parts else ""
    return (
        f"keras-face train: {scores}{where}, {results['backbone']} + {results['head']}, "
        f"{results['epochs']} epochs in {_format_duration(results['wall_seconds'])} -> "
        f"{results['output_dir']}"
    )
