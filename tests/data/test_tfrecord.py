import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


def test_round_trip_across_shards(tmp_path):
    images = make_images(10, seed=31)
    labels = np.arange(10) % 4
    paths = data.write_tfrecord(
        tmp_path / "train.tfrecord",
        zip(images, labels),
        num_shards=3,
        image_format="png",
        progress=False,
    )
    assert [os.path.basename(path) for path in paths] == [
        f"train-0000{i}-of-00003.tfrecord" for i in range(3)
    ]
    example = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(paths[1]))).numpy())
    features = example.features.feature
    assert features["image/class/label"].int64_list.value == [1]
    assert features["image/key"].bytes_list.value == [b"1"]
    assert features["image/height"].int64_list.value == [16] and features[
        "image/format"
    ].bytes_list.value == [b"png"]

    dataset = data.read_tfrecord(str(tmp_path / "train-*.tfrecord"), shuffle=False)
    got = list(dataset.dataset.as_numpy_iterator())
    assert len(got) == 10
    for image, label in got:  # every image comes back once with its label
        index = int(np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0])
        assert label == labels[index]
    assert sorted(
        int(np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0]) for image, _ in got
    ) == list(range(10))

    shuffled = data.read_tfrecord(
        paths,
        batch_size=4,
        seed=5,
        shuffle_buffer_size=8,
        flip=True,
        preprocessing="arcface",
        drop_remainder=True,
    )
    batches = list(shuffled.dataset.as_numpy_iterator())
    assert [batch.shape for batch, _ in batches] == [(4, 16, 20, 3)] * 2
    assert batches[0][0].dtype == np.float32

    first_worker = list(
        data.read_tfrecord(
            paths, num_shards=3, shard_index=0, shuffle=False
        ).dataset.as_numpy_iterator()
    )
    assert sorted(int(label) for _, label in first_worker) == sorted(
        labels[0::3].tolist()
    )  # by file


def test_undecodable_image_counted_with_its_key(tmp_path):
    images = make_images(6, seed=32)
    samples = [(encode(image), index) for index, image in enumerate(images)]
    samples[4] = (b"broken bytes", 4)
    path = data.write_tfrecord(tmp_path / "bad.tfrecord", samples, progress=False)[0]
    dataset = data.read_tfrecord(path, shuffle=False)
    got = list(dataset.dataset.as_numpy_iterator())
    assert [int(label) for _, label in got] == [0, 1, 2, 3, 5]
    assert dataset.stats.skipped == 1 and dataset.stats.skipped_keys == ["4"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at key 4"):
        list(data.read_tfrecord(path, shuffle=False, strict=True).dataset.as_numpy_iterator())


def test_truncated_file_names_file_and_offset(tmp_path):
    path = data.write_tfrecord(
        tmp_path / "t.tfrecord", zip(make_images(3), [0, 1, 2]), progress=False
    )[0]
    raw = open(path, "rb").read()
    second = 12 + len(next(iter(tf.data.TFRecordDataset(path))).numpy()) + 4  # offset of record 2
    open(path, "wb").write(raw[: second + 30])
    with pytest.raises(
        ValueError, match=rf"t\.tfrecord is truncated: the record at offset {second}"
    ):
        data.read_tfrecord(path)
    with pytest.raises(FileNotFoundError):
        data.read_tfrecord(str(tmp_path / "none-*.tfrecord"))
