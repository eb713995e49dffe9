import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402
from tests.datasets.script_loading import load_script  # noqa: E402

pytestmark = pytest.mark.tf_only

LABELS = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]


def read_sorted(path, source="auto"):
    """The (image bytes-decoded pixels, label) pairs of a dataset, in a canonical order."""
    faces = data.read_face_dataset(path, source=source, shuffle=False, batch_size=None)
    pairs = [(int(label), image.tobytes()) for image, label in faces.dataset.as_numpy_iterator()]
    return sorted(pairs), faces


@pytest.fixture
def folder(tmp_path):
    images = make_images(len(LABELS), seed=31)
    payloads = [encode(image, "JPEG" if index % 2 else "PNG") for index, image in enumerate(images)]
    names = ["alice", "bob", "carol", "dave"]
    data.write_image_folder(
        tmp_path / "folder", payloads, LABELS, class_names=names, progress=False
    )
    return tmp_path / "folder", payloads


def test_folder_to_recordio_to_tfrecord_to_folder_keeps_bytes_and_labels(tmp_path, folder):
    root, payloads = folder
    expected, _ = read_sorted(root)
    convert = load_script("convert").main
    assert (
        convert([str(root), str(tmp_path / "pack" / "train.rec"), "--to", "recordio", "--quiet"])
        == 0
    )
    pack = data.RecordIOImagePack(tmp_path / "pack" / "train.rec")
    assert pack.layout == "insightface" and pack.num_classes == 4
    assert sorted(bytes(pack.read_image(i)) for i in range(10)) == sorted(payloads)
    pack.close()

    summary = data.convert_face_dataset(
        tmp_path / "pack" / "train.rec",
        tmp_path / "shards" / "train.tfrecord",
        "tfrecord",
        num_shards=3,
        progress=False,
    )
    assert summary["num_images"] == 10 and len(summary["paths"]) == 3
    got, _ = read_sorted(summary["paths"], source="tfrecord")
    assert got == expected

    # TFRecord shards interleave identities: written back as an insightface pack, sorted.
    summary = data.convert_face_dataset(
        str(tmp_path / "shards" / "train-*.tfrecord"),
        tmp_path / "back" / "train.rec",
        "recordio",
        progress=False,
    )
    assert summary["source"] == "tfrecord" and summary["num_classes"] == 4
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == [
        "property",
        "train.idx",
        "train.rec",
    ]
    got, faces = read_sorted(tmp_path / "back" / "train.rec")
    assert got == expected and faces.layout == "insightface"
    labels = data.RecordIOImagePack(tmp_path / "back" / "train.rec").labels.tolist()
    assert labels == sorted(LABELS)

    assert (
        convert(
            [
                str(tmp_path / "back" / "train.rec"),
                str(tmp_path / "folder2"),
                "--to",
                "folder",
                "--quiet",
            ]
        )
        == 0
    )
    got, faces = read_sorted(tmp_path / "folder2")
    assert got == expected and faces.class_names == ["00000", "00001", "00002", "00003"]
    written = sorted(path.read_bytes() for path in (tmp_path / "folder2").rglob("*.*"))
    assert written == sorted(payloads)


def test_folder_to_folder_keeps_names_and_plain_layout(tmp_path, folder):
    root, _ = folder
    summary = data.convert_face_dataset(root, tmp_path / "copy", "folder", progress=False)
    assert summary["class_names"] == ["alice", "bob", "carol", "dave"]
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == summary["class_names"]
    data.convert_face_dataset(
        root, tmp_path / "plain.rec", "recordio", layout="plain", progress=False
    )
    pack = data.RecordIOImagePack(tmp_path / "plain.rec")
    assert pack.layout == "plain" and pack.labels.tolist() == LABELS
    with pytest.raises(ValueError, match="Received: to_format='lmdb'"):
        data.convert_face_dataset(root, tmp_path / "x", "lmdb")
    with pytest.raises(ValueError, match="Received: layout='mxnet'"):
        data.convert_face_dataset(root, tmp_path / "x.rec", "recordio", layout="mxnet")
    assert np.array_equal(read_sorted(tmp_path / "copy")[0], read_sorted(root)[0])
