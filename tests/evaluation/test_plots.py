"""ROC and score-distribution figures."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from keras_face.evaluation import plot_roc
from keras_face.evaluation import plot_score_distribution
from keras_face.evaluation import verify


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    issame = np.arange(400) % 2 == 0
    first = rng.normal(size=(400, 8))
    second = np.where(
        issame[:, None], first + 0.8 * rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    )
    embeddings = np.empty((800, 8))
    embeddings[0::2], embeddings[1::2] = first, second
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return verify(embeddings, issame)


def test_plot_roc_single_and_several(result, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figure = plot_roc(result)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert len(axes.lines) == 1 and axes.get_xscale() == "log"
    np.testing.assert_array_equal(axes.lines[0].get_xdata(), result["roc"]["fpr"])
    np.testing.assert_array_equal(axes.lines[0].get_ydata(), result["roc"]["tpr"])
    several = plot_roc(
        {
            "a": result,
            "b": (result["fpr"], result["tpr"]),
            "c": {"scores": result["scores"], "issame": result["issame"]},
        },
        log_scale=False,
    )
    axes = several.axes[0]
    assert [line.get_label() for line in axes.lines] == ["a", "b", "c"]
    assert axes.get_xscale() == "linear"
    np.testing.assert_array_equal(axes.lines[2].get_xdata(), result["roc"]["fpr"])
    several.savefig(tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert plt.get_fignums() == before  # no pyplot-managed figures
    with pytest.raises(ValueError, match="keys=\\['x'\\]"):
        plot_roc({"name": {"x": 1}})


def test_plot_score_distribution(result):
    figure = plot_score_distribution(result["scores"], result["issame"], threshold=0.3, bins=20)
    axes = figure.axes[0]
    assert len(axes.patches) == 40  # two histograms of 20 bins
    genuine_heights = np.array([patch.get_height() for patch in axes.patches[:20]])
    impostor_heights = np.array([patch.get_height() for patch in axes.patches[20:]])
    width = axes.patches[0].get_width()
    assert np.sum(genuine_heights) * width == pytest.approx(1.0)
    # Genuine scores sit to the right of impostor scores.
    centres = np.array([patch.get_x() + width / 2 for patch in axes.patches[:20]])
    assert np.average(centres, weights=genuine_heights) > np.average(
        centres, weights=impostor_heights
    )
    assert axes.lines[0].get_xdata()[0] == 0.3
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["genuine (200)", "impostor (200)", "threshold 0.300"]
    with pytest.raises(ValueError, match="issame.shape=\\(3,\\)"):
        plot_score_distribution([0.1, 0.2], [True, False, True])
