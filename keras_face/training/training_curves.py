"""Training curves of a run: loss, training accuracy, learning rate, verification accuracy."""

import numpy as np
from matplotlib.figure import Figure


def plot_training_curves(history, title="Training", figsize=(10.0, 3.2)):
    """Plot the per-epoch logs of a run in up to four panels.

    Args:
        history: dict `{key: list of per-epoch values}`, e.g. `model.fit(...).history` or
            the columns of the run's `logs/training_log.csv`. Panels: `loss`,
            `accuracy` (on the margin logits), `learning_rate`, and every
            `"<set>_accuracy"` written by `keras_face.evaluation.VerificationCallback`.
        title: str. Figure title. Defaults to `"Training"`.
        figsize: tuple. Figure size in inches. Defaults to `(10.0, 3.2)`.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
        ```python
        history = model.fit(dataset, epochs=5).history
        keras_face.training.plot_training_curves(history).savefig("curves.png")
        ```
    """
    verification = sorted(
        key
        for key in history
        if key.endswith("_accuracy") and key != "accuracy" and not key.startswith("val_")
    )
    panels = [
        ("loss", ["loss"], "training loss"),
        ("accuracy", ["accuracy"], "training accuracy (margin logits)"),
        ("learning_rate", ["learning_rate"], "learning rate"),
        ("verification", verification, "verification accuracy"),
    ]
    panels = [panel for panel in panels if any(key in history for key in panel[1])]
    if not panels:
        raise ValueError(
            "history has none of loss, accuracy, learning_rate, <set>_accuracy. "
            f"Received: keys {sorted(history)}"
        )
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (_, keys, label) in zip(axes, panels):
        for key in keys:
            if key not in history:
                continue
            values = np.asarray(history[key], dtype=float)
            epochs = np.arange(1, len(values) + 1)
            shown = np.isfinite(values)
            ax.plot(epochs[shown], values[shown], marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(linestyle="--", linewidth=0.5)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    figure.suptitle(title)
    return figure
