import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face.data.image_codec import decode_image  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402
from tests.datasets.script_loading import load_script  # noqa: E402

pytestmark = pytest.mark.tf_only


@pytest.fixture
def lfw_like(tmp_path):
    """An LFW-style tree (`Name/Name_0001.jpg`) and its `pairs.txt` (header, same, different)."""
    images = make_images(4, seed=41)
    files = {
        "Ann_Lee/Ann_Lee_0001.jpg": encode(images[0], "JPEG"),
        "Ann_Lee/Ann_Lee_0002.jpg": encode(images[1], "JPEG"),
        "Bo_Chen/Bo_Chen_0001.jpg": encode(images[2], "JPEG"),
        "Bo_Chen/Bo_Chen_0002.png": encode(images[3], "PNG"),
    }
    for relative, payload in files.items():
        path = tmp_path / "lfw" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "1\t2\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo_Chen\t1\n"
        "Ann_Lee/Ann_Lee_0001.jpg Bo_Chen/Bo_Chen_0002.png 0\n"
    )
    return tmp_path / "lfw", pairs, files


def test_bin_of_a_pairs_list_stores_the_files_byte_for_byte(tmp_path, lfw_like, capsys):
    images_dir, pairs, files = lfw_like
    output = tmp_path / "lfw.bin"
    assert (
        load_script("build_bin").main(
            ["--pairs", str(pairs), "--images", str(images_dir), "--output", str(output), "--quiet"]
        )
        == 0
    )
    assert "3 pairs (1 same), images (16, 20)" in capsys.readouterr().out
    encoded, issame = data.load_bin_pickle(output.read_bytes())
    order = [
        "Ann_Lee/Ann_Lee_0001.jpg",
        "Ann_Lee/Ann_Lee_0002.jpg",
        "Ann_Lee/Ann_Lee_0002.jpg",
        "Bo_Chen/Bo_Chen_0001.jpg",
        "Ann_Lee/Ann_Lee_0001.jpg",
        "Bo_Chen/Bo_Chen_0002.png",
    ]
    assert encoded == [files[name] for name in order] and issame == [True, False, False]
    images, got_issame = data.read_bin(output, progress=False)
    np.testing.assert_array_equal(images, np.stack([decode_image(files[n]) for n in order]))
    assert got_issame.tolist() == [True, False, False]


def test_resized_bin_and_errors(tmp_path, lfw_like):
    images_dir, pairs, files = lfw_like
    summary = data.build_verification_bin(
        pairs, images_dir, tmp_path / "small.bin", image_size=8, progress=False
    )
    assert summary == {
        "path": str(tmp_path / "small.bin"),
        "num_pairs": 3,
        "num_same": 1,
        "image_shape": (8, 8),
    }
    images, _ = data.read_bin(tmp_path / "small.bin", progress=False)
    assert images.shape == (6, 8, 8, 3)
    (images_dir / "Bo_Chen" / "Bo_Chen_0001.jpg").write_bytes(
        encode(make_images(1, height=10, width=10)[0], "JPEG")
    )
    with pytest.raises(data.PairsFileError, match="several sizes"):
        data.build_verification_bin(pairs, images_dir, tmp_path / "x.bin", progress=False)
    (images_dir / "Bo_Chen" / "Bo_Chen_0001.jpg").write_bytes(b"not an image")
    with pytest.raises(data.PairsFileError, match="Bo_Chen_0001.jpg"):
        data.build_verification_bin(pairs, images_dir, tmp_path / "x.bin", progress=False)
    (images_dir / "Bo_Chen" / "Bo_Chen_0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="pairs.txt:3"):
        data.build_verification_bin(pairs, images_dir, tmp_path / "x.bin", progress=False)
