import logging
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


def test_write_then_read_round_trip(tmp_path):
    images = make_images(9, seed=21)
    labels = np.array([2, 0, 1, 2, 0, 1, 1, 0, 2])
    names = ["alice", "bob", "carol"]
    paths = data.write_image_folder(tmp_path, images, labels, class_names=names, progress=False)
    assert [os.path.basename(os.path.dirname(path)) for path in paths] == [
        names[label] for label in labels
    ]

    listed_paths, listed_labels, class_names = data.list_image_folder(tmp_path)
    assert class_names == names and sorted(listed_paths) == listed_paths
    assert listed_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]

    dataset = data.read_image_folder(tmp_path, shuffle=False)
    assert dataset.class_names == names and dataset.num_classes == 3 and dataset.num_images == 9
    got = list(dataset.dataset.as_numpy_iterator())
    by_path = dict(zip(paths, zip(images, labels)))
    for (image, label), path in zip(got, listed_paths):
        expected_image, expected_label = by_path[path]
        np.testing.assert_array_equal(image, expected_image)
        assert label == expected_label

    batch_images, batch_labels = next(
        data.read_image_folder(
            tmp_path, batch_size=4, seed=0, flip=True, preprocessing="insightface"
        ).dataset.as_numpy_iterator()
    )
    assert batch_images.shape == (4, 16, 20, 3) and batch_images.dtype == np.float32
    assert (
        -1.0 <= batch_images.min() and batch_images.max() <= 1.0 and batch_labels.dtype == np.int32
    )


def test_default_names_and_validation(tmp_path):
    images = make_images(3)
    paths = data.write_image_folder(
        tmp_path / "a", images, [0, 11, 11], image_format="jpeg", progress=False
    )
    assert sorted({os.path.basename(os.path.dirname(path)) for path in paths}) == ["00000", "00011"]
    assert all(path.endswith(".jpg") for path in paths)
    # Empty identities keep their label: 12 directories, labels 0 and 11.
    assert data.read_image_folder(tmp_path / "a").num_classes == 12
    with pytest.raises(ValueError, match="sorted"):
        data.write_image_folder(
            tmp_path / "b", images, [0, 1, 1], class_names=["z", "a"], progress=False
        )
    with pytest.raises(ValueError, match="integer class ids"):
        data.write_image_folder(tmp_path / "c", images, [0, 0.5, 1], progress=False)
    with pytest.raises(FileNotFoundError):
        data.read_image_folder(tmp_path / "missing")


def test_undecodable_file_skipped_with_its_path(tmp_path, caplog):
    images = make_images(5, seed=22)
    data.write_image_folder(tmp_path, images, [0, 0, 1, 1, 1], progress=False)
    (tmp_path / "00001" / "zz_broken.png").write_bytes(b"not a png")
    dataset = data.read_image_folder(tmp_path, shuffle=False)
    with caplog.at_level(logging.WARNING, logger="keras_face.data"):
        got = list(dataset.dataset.as_numpy_iterator())
    assert [int(label) for _, label in got] == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(np.stack([image for image, _ in got]), images)
    assert dataset.stats.skipped_keys == [os.path.join("00001", "zz_broken.png")]
    assert "zz_broken.png" in caplog.text
    with pytest.raises(Exception, match="zz_broken.png"):
        list(
            data.read_image_folder(tmp_path, shuffle=False, strict=True).dataset.as_numpy_iterator()
        )
