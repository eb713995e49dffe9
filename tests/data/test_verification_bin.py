import logging
import os
import pickle
import pickletools
import re
import struct

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face.data import verification_bin  # noqa: E402
from keras_face.data.image_codec import decode_image  # noqa: E402
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
    path = data.write_bin(
        tmp_path / "pairs.bin",
        images,
        issame,
        image_format="png",
        protocol=protocol,
        progress=False,
    )
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
        blobs[f"py3_protocol{protocol}"] = pickle.dumps(
            (encoded, issame.tolist()), protocol=protocol
        )
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
        with pytest.raises(
            pickle.UnpicklingError, match=r"Refusing to load the global (posix|os|nt)\.system"
        ):
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
    path = data.write_bin(
        tmp_path / "mixed.bin",
        [small[0], large[0], small[1], large[1]],
        [True, False],
        image_format="png",
        progress=False,
    )
    with pytest.raises(ValueError, match="several sizes"):
        data.read_bin(path, progress=False)
    got_images, _ = data.read_bin(path, image_size=10, progress=False)
    assert got_images.shape == (4, 10, 10, 3)
    jpeg = data.write_bin(tmp_path / "jpeg.bin", make_images(2), [False], progress=False)
    got_images, got_issame = data.read_bin(jpeg, progress=False)
    assert got_images.shape == (2, 16, 20, 3) and got_issame.tolist() == [False]
    assert np.abs(got_images.astype(int) - make_images(2).astype(int)).mean() < 12  # JPEG q95


def numpy_1_module_paths(payload):
    """The pickle NumPy 1.x writes for the same arrays: `numpy.core` instead of `numpy._core`.

    The module names are length-prefixed (and framed under protocols 4-5), so the opcodes are
    renamed one by one and `pickletools.optimize` rebuilds the frames.
    """
    chunks = []
    for opcode, argument, _ in pickletools.genops(payload):
        if opcode.name == "FRAME":
            continue  # optimize() frames the result again
        if isinstance(argument, str) and argument.startswith("numpy._core"):
            argument = argument.replace("numpy._core", "numpy.core", 1)
        chunks.append(_encode_opcode(opcode, argument))
    return pickletools.optimize(b"".join(chunks))


def _encode_opcode(opcode, argument):
    code = opcode.code.encode("latin-1")
    name = opcode.name
    if argument is None:
        return code
    if name == "PROTO":
        return code + bytes([argument])
    if name == "GLOBAL":
        module, attribute = argument.split(" ")
        return code + f"{module}\n{attribute}\n".encode()
    if name in ("SHORT_BINUNICODE",):
        raw = argument.encode("utf-8")
        return code + bytes([len(raw)]) + raw
    if name == "BINUNICODE":
        raw = argument.encode("utf-8")
        return code + struct.pack("<I", len(raw)) + raw
    if name == "SHORT_BINBYTES":
        return code + bytes([len(argument)]) + argument
    if name == "BINBYTES":
        return code + struct.pack("<I", len(argument)) + argument
    if name == "BYTEARRAY8":
        return code + struct.pack("<Q", len(argument)) + bytes(argument)
    if name == "BININT1":
        return code + bytes([argument])
    if name == "BININT2":
        return code + struct.pack("<H", argument)
    if name == "BININT":
        return code + struct.pack("<i", argument)
    if name in ("BINGET", "BINPUT"):
        return code + bytes([argument])
    if name in ("LONG_BINGET", "LONG_BINPUT"):
        return code + struct.pack("<I", argument)
    raise AssertionError(f"opcode {name} not handled by the test encoder")


def build_eval_pack_pickle(encoded, issame, column=True, protocol=pickle.HIGHEST_PROTOCOL):
    """A `.bin` made as insightface's `build_eval_pack.py` makes it.

    It appends the array `cv2.imencode(".jpg", image)[1]` of each image (uint8, shape
    `(n, 1)`, writable) and dumps `(bins, issame_list)` with `pickle.HIGHEST_PROTOCOL`.
    """
    bins = []
    for image in encoded:
        array = np.frombuffer(image, np.uint8).copy()  # writable, like imencode's output
        bins.append(array.reshape(-1, 1) if column else array)
    return pickle.dumps((bins, list(issame)), protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("column", [True, False])
@pytest.mark.parametrize("numpy_1", [False, True])
def test_numpy_uint8_payloads_of_build_eval_pack_load(tmp_path, pairs, protocol, column, numpy_1):
    images, issame = pairs
    encoded = [encode(image, "JPEG") for image in images]
    payload = build_eval_pack_pickle(encoded, issame.tolist(), column=column, protocol=protocol)
    names = {
        argument
        for opcode, argument, _ in pickletools.genops(payload)
        if isinstance(argument, str) and argument.startswith("numpy")
    }
    assert any(name.startswith("numpy._core") for name in names), names  # NumPy 2 wrote it
    if numpy_1:
        payload = numpy_1_module_paths(payload)
        assert b"numpy._core" not in payload and b"numpy.core" in payload
    assert data.load_bin_pickle(payload) == (encoded, issame.tolist())
    path = tmp_path / "numpy.bin"
    path.write_bytes(payload)
    got_images, got_issame = data.read_bin(path, progress=False)
    expected = np.stack([decode_image(image) for image in encoded])  # Pillow: accurate IDCT
    np.testing.assert_array_equal(got_images, expected)
    assert got_issame.tolist() == issame.tolist()


@pytest.mark.parametrize("protocol", [2, 5])
def test_numpy_arrays_other_than_encoded_bytes_are_refused(protocol):
    marker = np.frombuffer(b"\xff\xd8\xff\xe0", np.uint8)
    refused = {
        "object array": (np.array([b"ab", b"cd"], dtype=object), "object array|dtype"),
        "2-D array": (np.zeros((4, 4), np.uint8), r"shape=\(4, 4\)"),
        "3-D array": (np.zeros((2, 2, 1), np.uint8), r"shape=\(2, 2, 1\)"),
        "int32 array": (marker.astype(np.int32), "dtype='<i4'|dtype='i4'"),
        "float array": (marker.astype(np.float64), "dtype='<f8'|dtype='f8'"),
    }
    for what, (array, message) in refused.items():
        payload = pickle.dumps(([array, marker], [True]), protocol=protocol)
        with pytest.raises(pickle.UnpicklingError, match=message):
            data.load_bin_pickle(payload)
            pytest.fail(f"the {what} was accepted")
    # numpy's reconstruction used on anything but an ndarray is refused as well.
    sneaky = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nc__builtin__\nbytes\nK\x00\x85U\x01b\x87R."
    )
    with pytest.raises(pickle.UnpicklingError, match="only allowed on numpy.ndarray"):
        data.load_bin_pickle(sneaky)


def test_errors_of_read_bin_name_the_file(tmp_path):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True]), protocol=4))
    with pytest.raises(ValueError) as error:
        data.read_bin(path, progress=False)
    assert str(error.value) == (
        f"{path}: A verification .bin file needs two images per pair. "
        "Received: 3 images and 1 pairs"
    )
    path.write_bytes(pickle.dumps(([np.zeros((2, 2), np.uint8), b"b"], [True]), protocol=5))
    with pytest.raises(pickle.UnpicklingError, match=rf"^{re.escape(str(path))}: .*shape=\(2, 2\)"):
        data.read_bin(path, progress=False)


def test_build_opcodes_cannot_alter_the_allowed_globals():
    # GLOBAL numpy.dtype, then BUILD with a slot state {"__defaults__": ("u1",)} on it,
    # POP, and return an empty list.
    tamper = b"\x80\x02cnumpy\ndtype\nN}X\x0c\x00\x00\x00__defaults__(X\x02\x00\x00\x00u1ts\x86b0]."
    with pytest.raises(ValueError, match="must hold a pair"):
        data.load_bin_pickle(tamper)
    # The BUILD reached a fresh wrapper, not the module's stand-in.
    assert verification_bin._safe_numpy_dtype.__defaults__ == (False, True)
    assert all(
        getattr(function, "__defaults__", None) != ("u1",)
        for function in verification_bin._ALLOWED_GLOBALS.values()
    )
    array = np.zeros(3, np.int32)
    with pytest.raises(pickle.UnpicklingError, match="another dtype"):
        data.load_bin_pickle(pickle.dumps(([array, array], [True]), protocol=2))
