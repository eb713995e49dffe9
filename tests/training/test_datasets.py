import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face import training  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


@pytest.fixture
def faces(tmp_path):
    images = make_images(10, seed=12)
    labels = np.arange(10) // 2
    samples = [(encode(image), label) for image, label in zip(images, labels)]
    samples[3] = (b"broken", labels[3])
    data.write_recordio(tmp_path / "train.rec", samples, progress=False)
    return images, labels, data.read_recordio(tmp_path / "train.rec", batch_size=4, shuffle=False)


def test_as_training_pairs_of_a_face_dataset(faces):
    images, labels, read = faces
    pairs = training.as_training_pairs(read)
    assert isinstance(pairs, tf.data.Dataset)
    batches = list(pairs.as_numpy_iterator())
    keep = [i for i in range(10) if i != 3]
    got_images = np.concatenate([batch_images for (batch_images, _), _ in batches])
    got_inputs = np.concatenate([batch_labels for (_, batch_labels), _ in batches])
    got_targets = np.concatenate([targets for _, targets in batches])
    assert got_images.dtype == np.float32
    np.testing.assert_array_equal(got_images, images[keep].astype(np.float32))
    assert got_inputs.tolist() == got_targets.tolist() == labels[keep].tolist()
    assert got_targets.dtype == np.int32
    # The counts stay on the FaceDataset, where the trainer reads them.
    assert read.stats.skipped == 1 and read.stats.delivered == 9
    assert pairs.options().experimental_distribute.auto_shard_policy == (
        tf.data.experimental.AutoShardPolicy.DATA
    )


def test_as_training_pairs_of_a_tf_dataset_and_dtype(faces):
    _, _, read = faces
    pairs = training.as_training_pairs(read.dataset, image_dtype="bfloat16")
    (batch_images, batch_labels), targets = next(iter(pairs))
    assert batch_images.dtype == tf.bfloat16 and batch_labels.dtype == tf.int32
    with pytest.raises(ValueError, match=r"Received: face_dataset=\[1, 2\]"):
        training.as_training_pairs([1, 2])
