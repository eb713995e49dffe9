import logging
import os
import pickle
import struct

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only


def python2_pickle_protocol2(images, issame):
    """The bytes Python 2's `pickle.dump((images, issame), f, protocol=2)` writes for str images."""
    out = [b"\x80\x02", b"]q\x00(" if images else b"]q\x00"]
    memo = 1
    for image in images:
        if len(image) < 256:
            out.append(b"U" + bytes([len(image)]) + image)  # SHORT_BINSTRING
        else:
            out.append(b"T" + struct.pack("<I", len(image)) + image)  # BINSTRING
        out.append(b"q" + bytes([memo]))
        memo += 1
    if images:
        out.append(b"e")  # APPENDS
    out.append(b"]q" + bytes([memo]) + b"(")
    out.extend(b"\x88" if value else b"\x89" for value in issame)  # NEWTRUE / NEWFALSE
    out.append(b"e\x86q" + bytes([memo + 1]) + b".")  # APPENDS, TUPLE2, BINPUT, STOP
    return b"".join(out)


def python2_pickle_protocol0(images, issame):
    """Python 2's default text protocol: STRING opcodes with escaped bytes, I01/I00 bools."""
    out = [b"((lp0\n"]
    for index, image in enumerate(images, start=1):
        escaped = "".join(f"\\x{byte:02x}" for byte in image).encode()
        out.append(b"S'" + escaped + b"'\np" + str(index).encode() + b"\na")
    out.append(b"(lp" + str(len(images) + 1).encode() + b"\n")
    out.extend(b"I01\na" if value else b"I00\na" for value in issame)
    out.append(b"tp" + str(len(images) + 2).encode() + b"\n.")
    return b"".join(out)


@pytest.fixture(scope="module")
def pairs():
    images = make_images(6, seed=11)
    return images, np.array([True, False, True])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_write_read_round_trip_every_protocol(tmp_path, pairs, protocol):
    images, issame = pairs
    path = data.write_bin(tmp_path / "pairs.bin", images, issame, image_format="png", protocol=protocol, progress=False)
    assert pickle.load(open(path, "rb"))[1] == [True, False, True]
    got_images, got_issame = data.read_bin(path, progress=False)
    assert got_images.dtype == np.uint8 and got_images.shape == (6, 16, 20, 3)
    np.testing.assert_array_equal(got_images, images)
    assert got_issame.dtype == bool and got_issame.tolist() == [True, False, True]


def test_python2_and_python3_pickles_of_the_same_content_load(tmp_path, pairs):
    images, issame = pairs
    encoded = [encode(image) for image in images]
    blobs = {
        "py2_protocol2": python2_pickle_protocol2(encoded, issame.tolist()),
        "py2_protocol0": python2_pickle_protocol0(encoded, issame.tolist()),
        "py2_short_strings": python2_pickle_protocol2([b"ab", b"\x00\xff"], [True]),
    }
    for protocol in range(0, 6):  # Python 3: protocols 0-2 encode bytes via _codecs.encode
        blobs[f"py3_protocol{protocol}"] = pickle.dumps((encoded, issame.tolist()), protocol=protocol)
    blobs["py3_bytearray"] = pickle.dumps(([bytearray(e) for e in encoded], [1, 0, 1]), protocol=2)
    blobs["py3_empty"] = pickle.dumps(([], []), protocol=2)
    for name, blob in blobs.items():
        loaded_images, loaded_issame = data.load_bin_pickle(blob)
        if name == "py2_short_strings":
            assert loaded_images == [b"ab", b"\x00\xff"] and loaded_issame == [True]
        elif name == "py3_empty":
            assert loaded_images == [] and loaded_issame == []
        else:
            assert loaded_images == encoded, name
            assert loaded_issame == [True, False, True], name
    (tmp_path / "lfw.bin").write_bytes(blobs["py2_protocol2"])
    got_images, got_issame = data.read_bin(tmp_path / "lfw.bin", progress=False)
    np.testing.assert_array_equal(got_images, images)
    assert got_issame.tolist() == [True, False, True]


class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_malicious_pickles_are_refused_without_side_effects(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 4, 5):
        payload = pickle.dumps(([_RunsShell(f"touch {marker}")], [True]), protocol=protocol)
        path = tmp_path / f"evil{protocol}.bin"
        path.write_bytes(payload)
        with pytest.raises(pickle.UnpicklingError, match=r"Refusing to load the global (posix|os|nt)\.system"):
            data.read_bin(path, progress=False)
        assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"(__builtin__|builtins)\.eval"):
        data.load_bin_pickle(pickle.dumps(_Evaluates(), protocol=2))
    # An allowed global used for something else is refused too.
    sneaky = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(pickle.UnpicklingError, match="other than latin-1"):
        data.load_bin_pickle(sneaky)
    huge = b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R."  # bytes(2**30)
    with pytest.raises(pickle.UnpicklingError, match="only allowed on bytes"):
        data.load_bin_pickle(huge)


def test_structure_is_validated():
    with pytest.raises(ValueError, match="two images per pair"):
        data.load_bin_pickle(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match="pair"):
        data.load_bin_pickle(pickle.dumps([b"a"]))
    with pytest.raises(ValueError, match=r"issame\[0\]"):
        data.load_bin_pickle(pickle.dumps(([b"a", b"b"], ["yes"])))
    with pytest.raises(ValueError, match="two images per pair"):
        data.write_bin("unused.bin", make_images(3), [True], progress=False)


def test_undecodable_image_drops_its_pair_and_strict_raises(tmp_path, pairs, caplog):
    images, issame = pairs
    encoded = [encode(image) for image in images]
    encoded[3] = b"garbage"
    path = data.write_bin(tmp_path / "bad.bin", encoded, issame, progress=False)
    stats = data.DataStats()
    with caplog.at_level(logging.WARNING, logger="keras_face.data"):
        got_images, got_issame = data.read_bin(path, stats=stats, progress=False)
    np.testing.assert_array_equal(got_images, images[[0, 1, 4, 5]])
    assert got_issame.tolist() == [True, True]
    assert stats.skipped == 1 and stats.skipped_keys == [3]
    assert "dropped 1 of 3 pairs" in caplog.text
    with pytest.raises(Exception, match=r"image 3 \(pair 1\)"):
        data.read_bin(path, strict=True, progress=False)


def test_mixed_sizes_need_image_size(tmp_path):
    small = make_images(2, height=8, width=8)
    large = make_images(2, height=12, width=12)
    path = data.write_bin(tmp_path / "mixed.bin", [small[0], large[0], small[1], large[1]], [True, False],
                          image_format="png", progress=False)
    with pytest.raises(ValueError, match="several sizes"):
        data.read_bin(path, progress=False)
    got_images, _ = data.read_bin(path, image_size=10, progress=False)
    assert got_images.shape == (4, 10, 10, 3)
    jpeg = data.write_bin(tmp_path / "jpeg.bin", make_images(2), [False], progress=False)
    got_images, got_issame = data.read_bin(jpeg, progress=False)
    assert got_images.shape == (2, 16, 20, 3) and got_issame.tolist() == [False]
    assert np.abs(got_images.astype(int) - make_images(2).astype(int)).mean() < 12  # JPEG q95
