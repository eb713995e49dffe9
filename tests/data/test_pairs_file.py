import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face.errors import KerasFaceError  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture
def lfw_folder(tmp_path):
    """An LFW-style folder: name/name_000n.jpg (PNG bytes are fine for Pillow)."""
    images = make_images(5, height=12, width=10, seed=4)
    files = [
        "Ann/Ann_0001.jpg",
        "Ann/Ann_0002.jpg",
        "Bob_Lee/Bob_Lee_0001.jpg",
        "x/a.png",
        "x/b.png",
    ]
    for relative, image in zip(files, images):
        os.makedirs(tmp_path / "images" / os.path.dirname(relative), exist_ok=True)
        Image.fromarray(image).save(tmp_path / "images" / relative, format="PNG")
    return tmp_path / "images", dict(zip(files, images))


def test_every_line_form(tmp_path, lfw_folder):
    images_dir, _ = lfw_folder
    path = write(
        tmp_path / "pairs.txt",
        "2\t3\n"  # LFW header: folds, pairs per fold
        "Ann\t1\t2\n"  # same person
        "\n"
        "Ann 2 Bob_Lee 1\n"  # two people
        "x/a.png x/b.png 1\n"
        "x/b.png Ann/Ann_0001.jpg 0\n"
        "x/a.png x/a.png TRUE\n"
        "x/b.png x/a.png false\n",
    )
    pairs = data.read_pairs_file(path, images_dir=images_dir)
    assert pairs == [
        ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", True),
        ("Ann/Ann_0002.jpg", "Bob_Lee/Bob_Lee_0001.jpg", False),
        ("x/a.png", "x/b.png", True),
        ("x/b.png", "Ann/Ann_0001.jpg", False),
        ("x/a.png", "x/a.png", True),
        ("x/b.png", "x/a.png", False),
    ]
    assert data.read_pairs_file(path) == pairs  # without a folder nothing is checked
    # Two integers on a later line are not a header but a bad line.
    bad = write(tmp_path / "late.txt", "Ann 1 2\n10 300\n")
    with pytest.raises(data.PairsFileError, match=r"late\.txt:2: .*Received: line='10 300'"):
        data.read_pairs_file(bad)


@pytest.mark.parametrize(
    "line",
    [
        "a.png b.png",
        "a.png b.png maybe",
        "Ann one 2",
        "Ann 1 Bob x",
        "a b c d e",
        "Ann 1 Bob",
        "only_one",
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line):
    path = write(tmp_path / "pairs.txt", f"Ann 1 2\n{line}\n")
    with pytest.raises(
        data.PairsFileError, match=rf"pairs\.txt:2: expected .*Received: line={line!r}"
    ):
        data.read_pairs_file(path)


def test_file_errors(tmp_path, lfw_folder):
    images_dir, _ = lfw_folder
    empty = write(tmp_path / "empty.txt", "10 300\n\n")
    with pytest.raises(data.PairsFileError, match="No pairs in the pairs file. Received: path="):
        data.read_pairs_file(empty)
    missing = write(tmp_path / "missing.txt", "Ann 1 2\nAnn 1 3\n")
    with pytest.raises(FileNotFoundError, match=r"Image of .*missing\.txt:2 not found") as info:
        data.read_pairs_file(missing, images_dir=images_dir)
    assert info.value.filename == os.path.join(str(images_dir), "Ann/Ann_0003.jpg")
    with pytest.raises(FileNotFoundError):
        data.read_pairs_file(tmp_path / "absent.txt")
    assert issubclass(data.PairsFileError, KerasFaceError) and issubclass(
        data.PairsFileError, ValueError
    )


def test_load_pair_images(tmp_path, lfw_folder):
    images_dir, originals = lfw_folder
    pairs = [("Ann/Ann_0001.jpg", "x/b.png", False), ("Ann/Ann_0002.jpg", "Ann/Ann_0001.jpg", True)]
    images, issame = data.load_pair_images(pairs, images_dir)
    assert images.shape == (4, 12, 10, 3) and images.dtype == np.uint8
    order = ["Ann/Ann_0001.jpg", "x/b.png", "Ann/Ann_0002.jpg", "Ann/Ann_0001.jpg"]
    np.testing.assert_array_equal(images, np.stack([originals[name] for name in order]))
    assert issame.tolist() == [False, True]

    resized, _ = data.load_pair_images(pairs, images_dir, image_size=(6, 8))
    expected = Image.fromarray(originals["x/b.png"]).resize((8, 6), Image.BILINEAR)
    assert resized.shape == (4, 6, 8, 3)
    np.testing.assert_array_equal(resized[1], np.asarray(expected))
    square, _ = data.load_pair_images(pairs, images_dir, image_size=5)
    assert square.shape == (4, 5, 5, 3)

    Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(images_dir / "x" / "small.png")
    with pytest.raises(data.PairsFileError, match=r"several sizes .*Received: image_size=None"):
        data.load_pair_images([("x/a.png", "x/small.png", True)], images_dir)
    (images_dir / "x" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(
        data.PairsFileError, match=r"Cannot decode .*Received: path='.*broken\.png'"
    ):
        data.load_pair_images([("x/a.png", "x/broken.png", True)], images_dir)
    with pytest.raises(FileNotFoundError):
        data.load_pair_images([("x/a.png", "x/none.png", True)], images_dir)


def test_pairs_to_bin_round_trip(tmp_path, lfw_folder):
    images_dir, _ = lfw_folder
    path = write(tmp_path / "pairs.txt", "1 2\nAnn 1 2\nAnn 2 Bob_Lee 1\n")
    images, issame = data.load_pair_images(data.read_pairs_file(path, images_dir), images_dir)
    data.write_bin(tmp_path / "lfw.bin", images, issame, image_format="png")
    loaded, loaded_issame = data.read_bin(tmp_path / "lfw.bin", progress=False)
    np.testing.assert_array_equal(loaded, images)
    assert loaded_issame.tolist() == [True, False]
