"""RecordIO packs between keras_face and MXNet 1.9.1 itself, both ways, compared exactly.

MXNet runs in its own environment (it needs `numpy<1.24`): `tests/interop/mxnet_client.py`
is run with the Python named by `KERAS_FACE_MXNET_PYTHON` (`.ci/run` creates
`.venv-mxnet` with `mxnet==1.9.1` and sets it); without it these tests are skipped.

- MXNet's packs (insightface layout with a two-line `property`, `im2rec` layout, raw
  records split at the magic word) are read by keras_face with the same labels, the same
  payload bytes and the same pixels as MXNet's own decoder;
- keras_face's writer produces MXNet's `.rec` and `.idx` byte for byte;
- keras_face's packs are read by MXNet's `MXIndexedRecordIO` (headers, payloads, pixels)
  and `ImageRecordIter` (pixels and labels) exactly.
"""

import io
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from keras_face import data

pytestmark = pytest.mark.tf_only

MXNET_PYTHON = os.environ.get("KERAS_FACE_MXNET_PYTHON")
if not MXNET_PYTHON:
    pytest.skip(
        "KERAS_FACE_MXNET_PYTHON (a Python with mxnet==1.9.1) is not set", allow_module_level=True
    )
CLIENT = os.path.join(os.path.dirname(__file__), "mxnet_client.py")
IMAGE_SIZE = (40, 32)
LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2]
MAGIC = data.RECORDIO_MAGIC.to_bytes(4, "little")
RAW_PAYLOADS = [
    b"abcd" + MAGIC + b"xyz12",  # split once at an aligned magic word
    bytes(range(256)) * 3 + MAGIC + MAGIC,  # split twice, at the end
    b"q",  # padded to 4 bytes
    b"ab" + MAGIC + b"cd",  # magic word at an unaligned offset: not split
]


def _client(*arguments):
    completed = subprocess.run(
        [MXNET_PYTHON, CLIENT, *arguments], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def _jpegs():
    """Smooth random faces-to-be with noise: JPEG (4:2:0, quality 90) as Pillow writes it."""
    rng = np.random.default_rng(0)
    height, width = IMAGE_SIZE
    encoded = []
    for index in range(len(LABELS)):
        y, x = np.mgrid[0:height, 0:width]
        base = 127 + 100 * np.sin(x[..., None] / (3 + index) + y[..., None] / 5 + np.arange(3))
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """MXNet's packs (`mx_*`), MXNet's reading of them, and the input they came from."""
    directory = tmp_path_factory.mktemp("mxnet")
    names = []
    for index, jpeg in enumerate(_jpegs()):
        names.append(f"{index}.jpg")
        (directory / names[-1]).write_bytes(jpeg)
    raw = []
    for index, payload in enumerate(RAW_PAYLOADS):
        raw.append(f"raw{index}.bin")
        (directory / raw[-1]).write_bytes(payload)
    spec = {
        "images": names,
        "labels": LABELS,
        "num_classes": 3,
        "image_size": IMAGE_SIZE,
        "raw": raw,
    }
    (directory / "input.json").write_text(json.dumps(spec))
    _client("write", str(directory))
    _client("read", str(directory), "mx_")
    return directory


def _mxnet_reading(directory, prefix):
    arrays = dict(np.load(directory / f"{prefix}read.npz"))
    metadata = json.loads((directory / f"{prefix}read.json").read_text())
    return arrays, metadata


def _keras_face_pixels(rec_path):
    faces = data.read_recordio(str(rec_path), batch_size=len(LABELS), shuffle=False)
    ((images, labels),) = faces.dataset.as_numpy_iterator()
    return faces, images, labels


def test_keras_face_reads_mxnet_packs_exactly(workdir):
    arrays, metadata = _mxnet_reading(workdir, "mx_")
    assert metadata["mxnet_version"] == "1.9.1"
    for layout in ("insightface", "plain"):
        faces, images, labels = _keras_face_pixels(workdir / f"mx_{layout}.rec")
        assert faces.layout == layout
        assert faces.num_images == len(LABELS)
        np.testing.assert_array_equal(labels, LABELS)
        # keras_face's default INTEGER_ACCURATE decoding gives MXNet's (OpenCV's) pixels.
        np.testing.assert_array_equal(images, arrays[f"{layout}_pixels"])
    faces, _, _ = _keras_face_pixels(workdir / "mx_insightface.rec")
    assert faces.num_classes == 3  # from the two-line property file insightface writes
    with data.RecordIOReader(str(workdir / "mx_raw.rec")) as reader:
        assert len(reader) == len(RAW_PAYLOADS)
        for key, payload in enumerate(RAW_PAYLOADS):
            assert reader.read(key) == payload
    with data.RecordIOReader(str(workdir / "mx_insightface.rec")) as reader:
        for key in metadata["insightface"]["keys"]:
            header, payload = data.unpack_header(reader.read(key))
            flag, label, record_id, record_id2 = metadata["insightface"]["headers"][key]
            assert (header.flag, header.id, header.id2) == (flag, record_id, record_id2)
            np.testing.assert_array_equal(np.ravel(header.label), np.ravel(label))
            assert payload == arrays[f"insightface_payload_{key}"].tobytes()


def _write_keras_face_packs(directory):
    jpegs = [(directory / f"{index}.jpg").read_bytes() for index in range(len(LABELS))]
    samples = list(zip(jpegs, LABELS))
    for layout in ("insightface", "plain"):
        data.write_recordio(
            str(directory / f"kf_{layout}.rec"),
            samples,
            layout=layout,
            num_classes=3,
            write_property=False,
            progress=False,
        )
    with data.RecordIOWriter(str(directory / "kf_raw.rec")) as writer:
        for key, payload in enumerate(RAW_PAYLOADS):
            writer.write(payload, key=key)
    return jpegs


def test_keras_face_writes_mxnet_files_byte_for_byte(workdir):
    _write_keras_face_packs(workdir)
    for name in ("insightface", "plain", "raw"):
        for suffix in (".rec", ".idx"):
            mine = (workdir / f"kf_{name}{suffix}").read_bytes()
            theirs = (workdir / f"mx_{name}{suffix}").read_bytes()
            assert mine == theirs, f"{name}{suffix} differs"


def test_mxnet_reads_keras_face_packs_exactly(workdir):
    jpegs = _write_keras_face_packs(workdir)
    _client("read", str(workdir), "kf_")
    arrays, metadata = _mxnet_reading(workdir, "kf_")
    # MXIndexedRecordIO: every key, header and payload as keras_face wrote them.
    count = len(LABELS)
    headers = metadata["insightface"]["headers"]
    assert metadata["insightface"]["keys"] == list(range(count + 1 + 3))
    assert headers[0] == [2, [count + 1.0, count + 4.0], 0, 0]
    for key, label in enumerate(LABELS, start=1):
        assert headers[key] == [0, float(label), key, 0]
        assert arrays[f"insightface_payload_{key}"].tobytes() == jpegs[key - 1]
    assert headers[count + 1 :] == [
        [2, [1.0, 4.0], count + 1, 0],
        [2, [4.0, 6.0], count + 2, 0],
        [2, [6.0, 10.0], count + 3, 0],
    ]
    assert metadata["plain"]["headers"] == [
        [0, float(label), key, 0] for key, label in enumerate(LABELS)
    ]
    for key, payload in enumerate(RAW_PAYLOADS):
        assert arrays[f"raw_payload_{key}"].tobytes() == payload
    # MXNet's decoder and ImageRecordIter see the pixels and labels keras_face reads.
    _, images, labels = _keras_face_pixels(workdir / "kf_plain.rec")
    np.testing.assert_array_equal(arrays["plain_pixels"], images)
    np.testing.assert_array_equal(arrays["insightface_pixels"], images)
    assert metadata["image_record_iter_pad"] == 0
    np.testing.assert_array_equal(arrays["iter_data"], images.transpose(0, 3, 1, 2).astype("f4"))
    np.testing.assert_array_equal(arrays["iter_label"], np.asarray(LABELS, "f4"))
