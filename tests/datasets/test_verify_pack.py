import hashlib
import struct

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402
from tests.datasets.script_loading import load_script  # noqa: E402

pytestmark = pytest.mark.tf_only

LABELS = [0, 0, 1, 1, 1, 2, 3, 3]


@pytest.fixture
def pack(tmp_path):
    images = make_images(len(LABELS), seed=21)
    path = tmp_path / "pack" / "train.rec"
    data.write_recordio(
        path, zip([encode(image, "JPEG") for image in images], LABELS), progress=False
    )
    return path


def write_md5sums(folder, names, corrupt=None):
    lines = []
    for name in names:
        digest = hashlib.md5((folder / name).read_bytes()).hexdigest()
        if name == corrupt:
            digest = "0" * 32
        lines.append(f"{digest}  {name}\n")
    (folder / "md5sums.txt").write_text("".join(lines))
    return folder / "md5sums.txt"


def test_a_sound_pack_passes_with_its_counts(pack, capsys):
    checksums = write_md5sums(pack.parent, ["train.rec", "train.idx", "property"])
    report = data.verify_recordio_pack(pack, checksum_file=checksums, progress=False)
    assert report.ok, report.problems
    assert (report.layout, report.num_images, report.num_classes) == ("insightface", 8, 4)
    assert report.image_shape == (16, 20) and report.label_range == (0, 3)
    assert report.num_decoded == 8 and report.empty_classes == 0
    assert report.checksums == {"train.rec": "ok", "train.idx": "ok", "property": "ok"}
    script = load_script("verify_pack")
    assert script.main([str(pack), "--checksums", str(checksums), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "insightface pack, 8 images, 4 classes" in out and out.strip().endswith("OK")


def test_undecodable_image_wrong_size_and_checksum_mismatch_are_reported(tmp_path, capsys):
    images = make_images(4, seed=3)
    payloads = [encode(image) for image in images]
    payloads[1] = b"\xff\xd8\xff not a jpeg"
    payloads[2] = encode(make_images(1, height=8, width=8)[0])
    path = tmp_path / "bad" / "train.rec"
    data.write_recordio(path, zip(payloads, [0, 0, 1, 1]), progress=False)
    checksums = write_md5sums(path.parent, ["train.rec", "train.idx"], corrupt="train.idx")
    (path.parent / "md5sums.txt").write_text(checksums.read_text() + f"{'1' * 64}  missing.bin\n")
    report = data.verify_recordio_pack(path, checksum_file=checksums, progress=False)
    assert not report.ok
    assert report.undecodable_keys == [2] and report.wrong_size_keys == [3]
    assert report.num_decoded == 3
    assert report.checksums == {
        "train.rec": "ok",
        "train.idx": "mismatch",
        "missing.bin": "missing",
    }
    assert len(report.problems) == 4
    script = load_script("verify_pack")
    assert script.main([str(path), "--checksums", str(checksums), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 images do not decode, e.g. keys [2]" in out and "FAILED (4 problems)" in out


def test_identity_ranges_that_disagree_with_labels_are_reported(tmp_path):
    images = make_images(4, seed=3)
    (tmp_path / "ranges").mkdir()
    path = str(tmp_path / "ranges" / "train.rec")
    # Header: images at keys 1..4, identity records at keys 5..6; identity 0 claims keys
    # 1..2 but key 2 is labelled 1.
    records = [
        (0, data.IRHeader(2, [5.0, 7.0], 0, 0), b""),
        (1, data.IRHeader(0, 0.0, 1, 0), encode(images[0])),
        (2, data.IRHeader(0, 1.0, 2, 0), encode(images[1])),
        (3, data.IRHeader(0, 1.0, 3, 0), encode(images[2])),
        (4, data.IRHeader(0, 1.0, 4, 0), encode(images[3])),
        (5, data.IRHeader(2, [1.0, 3.0], 5, 0), b""),
        (6, data.IRHeader(2, [3.0, 5.0], 6, 0), b""),
    ]
    with data.RecordIOWriter(path) as writer:
        for key, header, payload in records:
            writer.write(data.pack_header(header, payload), key=key)
    report = data.verify_recordio_pack(path, progress=False)
    assert report.layout == "insightface"
    assert report.problems == [
        "1 images carry a label other than their identity record's, e.g. key 2 has label 1 but "
        "lies in the range of identity 0"
    ]
    # A gap between two identities' ranges.
    with data.RecordIOWriter(path) as writer:
        for key, header, payload in records[:5]:
            writer.write(data.pack_header(header, payload), key=key)
        writer.write(data.pack_header(data.IRHeader(2, [1.0, 2.0], 5, 0)), key=5)
        writer.write(data.pack_header(data.IRHeader(2, [3.0, 5.0], 6, 0)), key=6)
    report = data.verify_recordio_pack(path, decode=False, progress=False)
    assert report.num_decoded == 0
    assert report.problems == [
        "the identity ranges must tile the image keys 1..4 in order; identity 1 starts at key 3 "
        "but identity 0 ends at key 2"
    ]


def test_property_and_structure_problems_are_reported_not_raised(pack):
    (pack.parent / "property").write_text("4,16,20\n9\n")
    report = data.verify_recordio_pack(pack, progress=False)
    assert report.layout is None and len(report.problems) == 1
    assert "declares 9 images but the pack holds 8" in report.problems[0]
    (pack.parent / "property").write_text("4,16,20\n8\n")  # insightface RecBuilder's form
    assert data.verify_recordio_pack(pack, progress=False).ok
    raw = bytearray(pack.read_bytes())
    raw[0:4] = struct.pack("<I", 0x12345678)
    pack.write_bytes(bytes(raw))
    report = data.verify_recordio_pack(pack, progress=False)
    assert not report.ok and "does not open" in report.problems[0]


def test_checksum_file_format_is_checked(tmp_path):
    path = tmp_path / "sums.txt"
    path.write_text("# comment\n" + "a" * 40 + "  *x.rec\n" + "b" * 64 + "  y.idx\n")
    assert data.read_checksum_file(path) == {
        "x.rec": ("sha1", "a" * 40),
        "y.idx": ("sha256", "b" * 64),
    }
    path.write_text("abc  x.rec\n")
    with pytest.raises(ValueError, match=r"sums.txt:1: .*Received: line='abc  x.rec'"):
        data.read_checksum_file(path)
    (tmp_path / "f").write_bytes(b"hello")
    assert data.file_digest(tmp_path / "f") == hashlib.md5(b"hello").hexdigest()
    assert np.array_equal(
        data.file_digest(tmp_path / "f", "sha256"), hashlib.sha256(b"hello").hexdigest()
    )
