"""`keras-face eval` on a `.bin` whose images are not the model's input size.

Real verification sets are 112x112; a model trained at another size used to meet them
with a raw Keras shape error. The command now resizes the pairs (bilinear, with the
reader's own resize) and says so.
"""

import numpy as np
import pytest

from keras_face import cli
from keras_face import data
from keras_face import evaluation
from tests.training import training_testing

pytestmark = pytest.mark.tf_only


def test_eval_resizes_a_bin_of_another_size(tmp_path, capsys):
    model = training_testing.tiny_backbone(image_size=16)
    model_path = tmp_path / "tiny16.keras"
    model.save(model_path)
    images, _ = training_testing.identity_images(4, 10, image_size=32)
    pairs, issame = [], []
    for index in range(20):
        same = index % 2 == 0
        first = (index % 4) * 10
        second = first + 1 if same else ((index % 4 + 1) % 4) * 10
        pairs += [images[first], images[second]]
        issame.append(same)
    bin_path = tmp_path / "pairs32.bin"
    data.write_bin(str(bin_path), np.stack(pairs), np.array(issame), progress=False)

    status = cli.main(
        ["eval", "--model", str(model_path), "--bin", str(bin_path), "--folds", "2", "--no-flip"]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert (
        f"{bin_path}: the images are 32x32, the model takes 16x16: resizing them (bilinear) "
        "to 16x16" in out
    )
    # The numbers are those of the pairs read at the model's size by the reader.
    resized, flags = data.read_bin(str(bin_path), image_size=(16, 16), progress=False)
    assert resized.shape == (40, 16, 16, 3)
    summary = evaluation.evaluate_pairs(
        model, resized, flags, name="pairs32", flip=False, n_folds=2, verbose=False
    )
    assert " ".join(summary.table_row()) in " ".join(out.split())


def test_eval_at_the_model_size_says_nothing_about_resizing(tmp_path, capsys):
    model = training_testing.tiny_backbone(image_size=16)
    model_path = tmp_path / "tiny16.keras"
    model.save(model_path)
    images, _ = training_testing.identity_images(2, 4, image_size=16)
    bin_path = tmp_path / "pairs16.bin"
    data.write_bin(str(bin_path), images, np.array([1, 0, 1, 0]), progress=False)
    status = cli.main(
        ["eval", "--model", str(model_path), "--bin", str(bin_path), "--folds", "2", "--no-flip"]
    )
    assert status == 0
    assert "resizing" not in capsys.readouterr().out
