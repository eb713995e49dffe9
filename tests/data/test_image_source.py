"""The public source protocol: user-written sources run through the readers' pipeline."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from tests.data import reader_golden  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


class ArraySource(data.IndexedSource):
    """Encoded images held in a Python list: the smallest random-access source."""

    def __init__(self, encoded, labels, **order):
        super().__init__(**order)
        self.encoded = list(encoded)
        self.labels = np.asarray(labels, dtype=np.int32)
        self.num_items = len(self.encoded)
        self.num_classes = int(self.labels.max()) + 1
        self.class_names = [f"person{label}" for label in range(self.num_classes)]
        self.description = "array source"

    def read_payloads(self, items):
        return [self.encoded[item] for item in items]

    def item_key(self, item):
        return f"item{int(item)}"


class StreamSource:
    """A streaming source implementing `ImageSource` directly (no Python random access)."""

    description = "stream source"
    chunk_size = 4
    num_classes = 3

    def __init__(self, encoded, labels):
        self.encoded = list(encoded)
        self.labels = np.asarray(labels, dtype=np.int32)
        self.keys = {}

    def num_images(self, options):
        return len(self.encoded)

    def start_pass(self, pass_index):
        self.keys = {}

    def key_of(self, position):
        return self.keys[position]

    def describe_key(self, key):
        return f"<{key}>"

    def forget(self, positions):
        for position in positions.tolist():
            del self.keys[position]

    def chunks(self, tracker):
        def register(indices):
            indices = indices.numpy()
            start = tracker.emitted
            for offset, index in enumerate(indices.tolist()):
                self.keys[start + offset] = f"stream{index}"
            return tracker.emit(start, len(indices))

        def with_sequences(indices, payloads, labels):
            sequences = tf.py_function(register, [indices], tf.int64)
            sequences.set_shape([None])
            return sequences, payloads, labels

        indices = np.arange(len(self.encoded), dtype=np.int64)
        return (
            tf.data.Dataset.from_tensor_slices((indices, self.encoded, self.labels))
            .batch(self.chunk_size)
            .map(with_sequences)
        )


@pytest.fixture(scope="module")
def samples():
    images = make_images(11, seed=41)
    labels = np.arange(11) % 3
    return images, labels, [encode(image) for image in images]


def test_indexed_user_source_matches_the_recordio_reader(samples, tmp_path):
    images, labels, encoded = samples
    source = ArraySource(encoded, labels)
    assert isinstance(source, data.ImageSource)
    faces = data.read_source(source, batch_size=4, seed=3, flip=True, preprocessing="arcface")
    assert (faces.num_classes, faces.num_images, faces.layout) == (3, 11, None)
    assert faces.class_names == ["person0", "person1", "person2"]
    # Same bytes in a RecordIO pack read with the same options: identical batches.
    data.write_recordio(tmp_path / "a.rec", zip(encoded, labels), layout="plain", progress=False)
    options = data.ReadOptions(batch_size=4, seed=3, flip=True, preprocessing="arcface")
    packed = data.read_recordio(tmp_path / "a.rec", options)
    assert reader_golden.digest(faces.dataset.as_numpy_iterator()) == reader_golden.digest(
        packed.dataset.as_numpy_iterator()
    )
    batches = list(faces.dataset.as_numpy_iterator())
    assert [len(batch_labels) for _, batch_labels in batches] == [4, 4, 3]
    assert faces.stats.delivered == 22 and faces.stats.passes_completed == 2  # two passes read


def test_user_source_undecodable_images_are_counted_with_its_keys(samples):
    images, labels, encoded = samples
    broken = list(encoded)
    broken[2] = b"garbage"
    broken[9] = b"more garbage"
    stats = data.DataStats()
    faces = data.read_source(ArraySource(broken, labels), shuffle=False, stats=stats)
    got = list(faces.dataset.as_numpy_iterator())
    keep = [i for i in range(11) if i not in (2, 9)]
    np.testing.assert_array_equal(np.stack([image for image, _ in got]), images[keep])
    assert [int(label) for _, label in got] == labels[keep].tolist()
    assert faces.stats is stats and stats.skipped_keys == ["item2", "item9"]
    strict = data.read_source(ArraySource(broken, labels), shuffle=False, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="array source at key item2"):
        list(strict.dataset.as_numpy_iterator())


def test_fixed_order_of_an_indexed_source_wins_over_the_options(samples):
    _, labels, encoded = samples
    fixed = ArraySource(encoded, labels, shuffle=False, num_shards=1, shard_index=0)
    faces = data.read_source(fixed, shuffle=True, seed=1, num_shards=2, shard_index=1)
    assert faces.num_images == 11
    got = [int(label) for _, label in faces.dataset.as_numpy_iterator()]
    assert got == labels.tolist()
    sharded = data.read_source(
        ArraySource(encoded, labels), shuffle=False, num_shards=2, shard_index=1
    )
    assert sharded.num_images == 5
    assert [int(y) for _, y in sharded.dataset.as_numpy_iterator()] == labels[1::2].tolist()


def test_streaming_user_source_through_the_protocol(samples):
    images, labels, encoded = samples
    broken = list(encoded)
    broken[5] = b"not an image"
    source = StreamSource(broken, labels)
    assert isinstance(source, data.ImageSource)
    faces = data.read_source(source, batch_size=3, drop_remainder=True, image_size=(8, 10))
    assert (faces.num_classes, faces.num_images, faces.class_names) == (3, 11, None)
    batches = list(faces.dataset.as_numpy_iterator())
    assert [batch.shape for batch, _ in batches] == [(3, 8, 10, 3)] * 3
    assert np.concatenate([y for _, y in batches]).tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 0]
    assert faces.stats.skipped_keys == ["stream5"] and faces.stats.delivered == 10
    assert source.keys == {5: "stream5"}  # delivered positions are forgotten, not skipped ones


def test_an_object_without_the_protocol_is_refused():
    class Half:
        description = "half a source"
        chunk_size = 8

    with pytest.raises(ValueError, match="it has no `num_images`. Received: source=<"):
        data.read_source(Half())
    with pytest.raises(ValueError, match="it has no `description`"):
        data.read_source(object())


def test_read_face_dataset_picks_the_reader(tmp_path):
    paths = reader_golden.write_fixtures(tmp_path)
    options = data.ReadOptions(batch_size=5, seed=2, flip=True)
    readers = {
        paths["insightface"]: data.read_recordio,
        paths["folder"]: data.read_image_folder,
        paths["tfrecord"][0]: data.read_tfrecord,
    }
    for path, reader in readers.items():
        tf.random.set_seed(0)
        auto = data.read_face_dataset(path, options=options, shuffle=False)
        tf.random.set_seed(0)
        direct = reader(path, options, shuffle=False)
        assert (auto.num_classes, auto.num_images, auto.class_names, auto.layout) == (
            direct.num_classes,
            direct.num_images,
            direct.class_names,
            direct.layout,
        )
        assert reader_golden.digest(auto.dataset.as_numpy_iterator()) == reader_golden.digest(
            direct.dataset.as_numpy_iterator()
        )
    tf.random.set_seed(None)
    assert data.detect_source(paths["tfrecord"]) == "tfrecord"
    assert data.detect_source(str(tmp_path / "shards" / "*.tfrecord")) == "tfrecord"
    assert data.read_face_dataset(paths["folder"]).class_names[:2] == ["00000", "00001"]
    forced = data.read_face_dataset(paths["plain"], source="recordio", shuffle=False)
    assert forced.layout == "plain"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="Pass `source=`. Received: path="):
        data.read_face_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        data.read_face_dataset(str(tmp_path / "missing.bin"))
    with pytest.raises(ValueError, match="Received: source='lmdb'"):
        data.read_face_dataset(paths["folder"], source="lmdb")


def test_tfrecord_num_classes_and_counts(tmp_path):
    images = make_images(7, seed=3)
    path = data.write_tfrecord(
        tmp_path / "one.tfrecord", zip(images, [0, 1] * 3 + [0]), image_format="png", progress=False
    )
    faces = data.read_tfrecord(path, num_classes=2, num_shards=2, shard_index=1)
    assert (faces.num_classes, faces.num_images) == (2, 3)  # record shards of one file
    assert len(list(faces.dataset.as_numpy_iterator())) == 3
    with pytest.raises(ValueError, match="Received: num_classes=0"):
        data.read_tfrecord(path, num_classes=0)


@pytest.mark.parametrize(
    "options",
    [
        dict(batch_size=4, seed=3, flip=True, preprocessing="arcface"),
        dict(seed=5, num_shards=2, shard_index=1, image_size=(8, 9), flip=True),
        dict(batch_size=3, shuffle=False, drop_remainder=True, repeat=True),
    ],
)
def test_in_memory_arrays_give_the_batches_of_a_lossless_pack(samples, tmp_path, options):
    images, labels, encoded = samples  # PNG: decoding gives the arrays back exactly
    data.write_recordio(tmp_path / "p.rec", zip(encoded, labels), layout="plain", progress=False)
    packed = data.read_recordio(tmp_path / "p.rec", **options)
    memory = data.read_arrays(images, labels, **options)
    limit = 7 if options.get("repeat") else None
    assert reader_golden.digest(memory.dataset.as_numpy_iterator(), limit) == reader_golden.digest(
        packed.dataset.as_numpy_iterator(), limit
    )
    assert (memory.num_classes, memory.num_images) == (packed.num_classes, packed.num_images)


def test_array_source_checks_and_synthetic_faces():
    faces = data.synthetic_faces(3, 2, image_size=24, seed=1, verbose=False)
    source = data.ArraySource(faces.images, faces.labels, class_names=["a", "b", "c"])
    assert isinstance(source, data.ImageSource)
    read = data.read_source(source, shuffle=False)
    got = list(read.dataset.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([image for image, _ in got]), faces.images)
    assert [int(label) for _, label in got] == faces.labels.tolist()
    assert (read.num_classes, read.num_images, read.class_names) == (3, 6, ["a", "b", "c"])
    assert data.read_arrays(faces.images, faces.labels, num_classes=10).num_classes == 10
    with pytest.raises(
        ValueError, match=r"Received: images.shape=\(6, 24, 24, 3\), images.dtype=float32"
    ):
        data.ArraySource(faces.images.astype(np.float32), faces.labels)
    with pytest.raises(ValueError, match="Received: len\\(labels\\)=5"):
        data.ArraySource(faces.images, faces.labels[:5])
    with pytest.raises(ValueError, match="Received: num_classes=2"):
        data.ArraySource(faces.images, faces.labels, num_classes=2)
    with pytest.raises(ValueError, match="Received: len\\(class_names\\)=1"):
        data.ArraySource(faces.images, faces.labels, class_names=["a"])
