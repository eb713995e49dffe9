"""JPEG decoding in the reader pipeline: bit-exact parity with libjpeg's accurate IDCT (Pillow).

OpenCV, MXNet and Pillow decode JPEGs with libjpeg's accurate integer IDCT; TensorFlow's
default is the fast one. `ReadOptions.jpeg_dct_method` picks between them.
"""

import io

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face.data.pipeline import decode_payload_image  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


def jpeg(image, quality, subsampling):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def decode_with_pillow(payload):
    with Image.open(io.BytesIO(payload)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def jpegs():
    """JPEGs at several qualities and chroma subsamplings (4:4:4, 4:2:2, 4:2:0), one grey."""
    images = make_images(12, height=24, width=32, seed=5)
    settings = [
        (quality, subsampling) for quality in (75, 90, 95, 100) for subsampling in (0, 1, 2)
    ]
    payloads = [
        jpeg(image, quality, subsampling) for image, (quality, subsampling) in zip(images, settings)
    ]
    grey = Image.fromarray(images[0, :, :, 0])
    buffer = io.BytesIO()
    grey.save(buffer, format="JPEG", quality=90)
    payloads.append(buffer.getvalue())
    return payloads


def test_accurate_idct_equals_pillow_bit_for_bit(jpegs):
    fast_differences = []
    for payload in jpegs:
        expected = decode_with_pillow(payload)
        accurate = decode_payload_image(tf.constant(payload), "INTEGER_ACCURATE").numpy()
        np.testing.assert_array_equal(accurate, expected)
        fast = decode_payload_image(tf.constant(payload), "INTEGER_FAST").numpy()
        np.testing.assert_array_equal(
            fast, tf.io.decode_image(payload, channels=3, expand_animations=False).numpy()
        )
        fast_differences.append(np.abs(fast.astype(int) - expected).max())
    # The fast IDCT is not Pillow's: a few levels off on most of these images.
    assert max(fast_differences) >= 2
    assert sum(difference > 0 for difference in fast_differences) >= len(jpegs) // 2


def test_png_payloads_do_not_depend_on_the_method():
    image = make_images(1, seed=3)[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    for method in data.ReadOptions.__dataclass_fields__["jpeg_dct_method"].default, "INTEGER_FAST":
        decoded = decode_payload_image(tf.constant(buffer.getvalue()), method).numpy()
        np.testing.assert_array_equal(decoded, image)


def test_readers_decode_like_pillow_by_default(tmp_path, jpegs):
    labels = list(range(len(jpegs)))
    expected = np.stack([decode_with_pillow(payload) for payload in jpegs[:12]])
    data.write_recordio(tmp_path / "pack" / "train.rec", zip(jpegs[:12], labels), progress=False)
    faces = data.read_recordio(tmp_path / "pack" / "train.rec", shuffle=False, batch_size=12)
    images, got_labels = next(iter(faces.dataset))
    np.testing.assert_array_equal(images.numpy(), expected)
    assert got_labels.numpy().tolist() == labels[:12]

    fast = data.read_recordio(
        tmp_path / "pack" / "train.rec",
        shuffle=False,
        batch_size=12,
        jpeg_dct_method="INTEGER_FAST",
    )
    fast_images = next(iter(fast.dataset))[0].numpy()
    assert np.abs(fast_images.astype(int) - expected).max() >= 2

    for index, payload in enumerate(jpegs[:4]):
        folder = tmp_path / "folder" / f"id{index}"
        folder.mkdir(parents=True)
        (folder / "face.jpg").write_bytes(payload)
    folder_images = next(
        iter(data.read_image_folder(tmp_path / "folder", shuffle=False, batch_size=4).dataset)
    )[0]
    np.testing.assert_array_equal(folder_images.numpy(), expected[:4])

    path = data.write_bin(tmp_path / "pairs.bin", jpegs[:12], [True] * 6, progress=False)
    bin_images, _ = data.read_bin(path, progress=False)
    np.testing.assert_array_equal(bin_images, expected)
    fast_bin, _ = data.read_bin(path, progress=False, jpeg_dct_method="INTEGER_FAST")
    np.testing.assert_array_equal(fast_bin, fast_images)


def test_bad_method_is_refused_naming_it():
    with pytest.raises(ValueError, match="Received: jpeg_dct_method='INTEGER_FLOAT'"):
        data.ReadOptions(jpeg_dct_method="INTEGER_FLOAT")
    with pytest.raises(TypeError, match="Did you mean 'jpeg_dct_method'"):
        data.ReadOptions().replace(jpeg_dct_methd="INTEGER_FAST")
