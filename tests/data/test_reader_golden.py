"""The readers give exactly the batches they gave before `ReadOptions` and `FaceDataset`.

Each scenario of `tests/data/reader_golden.py` is read with today's keyword call and with
an equivalent `ReadOptions` object; both must hash to the value computed with the readers
at commit 82b8a65 (pixels, dtypes, shapes and labels of every batch, in order).
"""

import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face import training  # noqa: E402
from tests.data import reader_golden  # noqa: E402

pytestmark = pytest.mark.tf_only

# Computed with the readers before the refactor (they returned a tf.data.Dataset).
GOLDEN = {
    "recordio_repeat_flip_arcface": "3bf44629fcbd9205",
    "recordio_shard_resize_drop": "672faceffa8da156",
    "recordio_plain_single_flip": "70712e635a5b4ed1",
    "recordio_augmentation": "ce2c60113fecf76c",
    "recordio_broken_skipped": "0dd00e63e78be7ca",
    "folder_flip_insightface": "ea496bb3cff06a11",
    "folder_single_resize": "f5961cf61a47a883",
    "tfrecord_shuffle_repeat": "e9331d0059bc2117",
    "tfrecord_file_shard": "aa1859853144c0d8",
    "training_default": "22c7b2ce50ea6633",
    "training_resumed": "fe8c18aabbc949c4",
    "training_no_flip_no_shuffle_uint8": "ccc913eb7baf19f1",
}
# What the old datasets carried as attributes (num_classes, num_images, layout).
METADATA = {
    "recordio_repeat_flip_arcface": (6, 23, "insightface"),
    "recordio_shard_resize_drop": (6, 11, "insightface"),
    "recordio_plain_single_flip": (6, 23, "plain"),
    "recordio_augmentation": (6, 23, "insightface"),
    "recordio_broken_skipped": (6, 23, "insightface"),
    "folder_flip_insightface": (6, 23, None),
    "folder_single_resize": (6, 23, None),
    "tfrecord_shuffle_repeat": (None, 23, None),
    "tfrecord_file_shard": (None, 8, None),
}


@pytest.fixture(scope="module")
def fixture_paths(tmp_path_factory):
    return reader_golden.write_fixtures(tmp_path_factory.mktemp("golden"))


@pytest.fixture
def fixed_global_seed():
    # tf.data shuffles (TFRecord) combine the op seed with the global seed.
    tf.random.set_seed(0)
    yield
    tf.random.set_seed(None)


@pytest.mark.parametrize("name", sorted(reader_golden.SCENARIOS))
@pytest.mark.parametrize("form", ["keywords", "options"])
def test_reader_batches_match_the_old_keyword_call(name, form, fixture_paths, fixed_global_seed):
    reader_name, key, arguments, limit = reader_golden.SCENARIOS[name]
    reader = getattr(data, reader_name)
    format_arguments = {
        key: value for key, value in arguments.items() if key not in data.ReadOptions.field_names()
    }
    option_arguments = {k: v for k, v in arguments.items() if k not in format_arguments}
    if form == "keywords":
        faces = reader(fixture_paths[key], **arguments)
    else:
        faces = reader(fixture_paths[key], data.ReadOptions(**option_arguments), **format_arguments)
    assert isinstance(faces, data.FaceDataset)
    assert isinstance(faces.dataset, tf.data.Dataset)
    assert reader_golden.digest(faces.dataset.as_numpy_iterator(), limit) == GOLDEN[name]
    assert (faces.num_classes, faces.num_images, faces.layout) == METADATA[name]
    assert isinstance(faces.stats, data.DataStats)
    if name == "recordio_broken_skipped":
        assert faces.stats.skipped == 2 and faces.stats.skipped_keys == [18, 6]
        assert faces.stats.delivered == 21
    elif limit is None:
        assert faces.stats.skipped == 0 and faces.stats.passes_completed == 1


@pytest.mark.parametrize("name", sorted(reader_golden.TRAINING_SCENARIOS))
def test_make_training_dataset_batches_unchanged(name):
    images, labels = reader_golden.make_training_images()
    dataset = training.make_training_dataset(
        images, labels, **reader_golden.TRAINING_SCENARIOS[name]
    )
    elements = ((a, b, c) for (a, b), c in dataset.as_numpy_iterator())
    assert reader_golden.digest(elements) == GOLDEN[name]
