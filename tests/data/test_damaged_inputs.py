"""Damaged `.rec`/`.idx`/`property` packs, image folders and `.bin` files (issue 15).

Every damaged input either raises a `keras_face.errors.DataError` naming the file (and the
numbers that disagree), or is read with every image accounted for: delivered, or skipped
and counted with its key.
"""

import errno
import functools
import os
import pickle
import shutil
import struct

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import cli  # noqa: E402
from keras_face import data  # noqa: E402
from keras_face.data import image_codec  # noqa: E402
from keras_face.errors import DataError  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only

NUM_IMAGES = 24
NUM_CLASSES = 6


def write_pack(directory, image_format="png", with_property=True):
    """An insightface pack of 24 images of 6 identities: header, images 1..24, ids 25..30."""
    os.makedirs(directory, exist_ok=True)
    images = make_images(NUM_IMAGES, seed=15)
    if image_format == "jpeg":
        samples = [(encode(image, "JPEG"), index // 4) for index, image in enumerate(images)]
    else:
        samples = [(encode(image), index // 4) for index, image in enumerate(images)]
    path = os.path.join(directory, "train.rec")
    data.write_recordio(path, samples, progress=False, write_property=with_property)
    return path


def records_of(path):
    with data.RecordIOReader(path) as reader:
        return [(key, bytes(payload)) for key, payload in reader]


def rewrite_pack(path, records):
    with data.RecordIOWriter(path) as writer:
        for key, payload in records:
            writer.write(payload, key=key)


def with_header(path, first, end):
    records = records_of(path)
    records[0] = (0, data.pack_header(data.IRHeader(0, [first, end], 0, 0)))
    rewrite_pack(path, records)


def read_everything(path_or_faces):
    faces = path_or_faces
    if not isinstance(faces, data.FaceDataset):
        faces = data.read_recordio(faces, shuffle=False)
    count = sum(1 for _ in faces.dataset)
    return faces, count


# --------------------------------------------------------------------- header and .idx


@pytest.mark.parametrize(
    "first, end, with_property, expected",
    [
        # Images 1..4 and "identities" 5..28 of a pack of 31 records: 4 of 24 images.
        (5, 29, True, r"header record \(key 0\) says the pack holds 29 records .* lists 31"),
        (5, 29, False, r"says the pack holds 29 records .* lists 31 records"),
        # Without property: num_classes would have been 1,000,000.
        (25, 1_000_025, False, r"holds 1000025 records .* lists 31 records"),
        # Must fail before allocating 2e9 keys (7.45 GiB).
        (1e9, 2e9, False, r"holds 2000000000 records .* lists 31 records"),
        (float("inf"), float("inf"), False, r"labels \[inf, inf\], which are not the integer"),
        (float("nan"), float("nan"), False, r"labels \[nan, nan\], which are not the integer"),
        (2.5, 31, False, r"labels \[2\.5, 31\.0\]"),
        (1, 1, False, r"holds 1 records .* lists 31 records"),
        (10, 5, False, r"labels \[10, 5\]; an insightface header needs 1 <= first"),
        # Right count, wrong boundary: key 20 is an image, not an identity record.
        (20, 31, False, r"says key 20 is an identity record .* but it is not"),
        (23, 31, True, r"says key 23 is an identity record"),
        # Right count, key 26 is an identity record, not the last image.
        (27, 31, False, r"says key 26 is an image"),
    ],
)
def test_header_that_disagrees_with_the_index_raises(tmp_path, first, end, with_property, expected):
    path = write_pack(tmp_path / "pack", with_property=with_property)
    with_header(path, first, end)
    with pytest.raises(data.RecordIOError, match=expected) as error:
        data.read_recordio(path)
    assert path in str(error.value) and isinstance(error.value, DataError)


def test_consistent_pack_still_reads_fully(tmp_path):
    path = write_pack(tmp_path / "pack", with_property=False)
    faces, count = read_everything(path)
    assert (faces.layout, faces.num_images, faces.num_classes, count) == ("insightface", 24, 6, 24)


def test_damaged_header_flag_is_not_read_as_a_plain_pack(tmp_path):
    path = write_pack(tmp_path / "pack", with_property=False)
    records = records_of(path)
    # Flag 2 -> 0: record 0 is no header, and the identity records would become "images".
    records[0] = (0, struct.pack("<IfQQ", 0, 0.0, 0, 0) + struct.pack("<ff", 25.0, 31.0))
    rewrite_pack(path, records)
    with pytest.raises(data.RecordIOError, match=r"6 records \(keys \[25, 26, 27, 28, 29"):
        data.read_recordio(path)
    # Read as plain on request, every record is an image: no error about the header.
    assert data.RecordIOImagePack(path, layout="plain").num_images == 31


def test_property_and_header_must_agree(tmp_path):
    path = write_pack(tmp_path / "pack")
    property_path = os.path.join(tmp_path, "pack", "property")
    with open(property_path, "w") as file:
        file.write("7,16,20")
    with pytest.raises(data.RecordIOError, match=r"declares 6 identity records but .*7 classes"):
        data.read_recordio(path)
    with open(property_path, "wb") as file:
        file.write(b"\xff\xfe\x00garbage")
    with pytest.raises(data.RecordIOError, match=r"property is not text"):
        data.read_recordio(path)


def test_empty_idx_or_rec_raises(tmp_path):
    path = write_pack(tmp_path / "pack")
    index_path = path[: -len(".rec")] + ".idx"
    open(index_path, "w").close()
    with pytest.raises(data.RecordIOError, match=r"train\.idx is empty but .*train\.rec has"):
        data.read_recordio(path)
    open(path, "wb").close()  # both empty
    with pytest.raises(data.RecordIOError, match=r"holds no records"):
        data.read_recordio(path)
    os.remove(index_path)  # an empty .rec alone
    with pytest.raises(data.RecordIOError, match=r"train\.rec holds no records"):
        data.read_recordio(path)


def test_pack_without_images_raises(tmp_path):
    path = str(tmp_path / "header_only.rec")
    data.write_recordio(path, [], num_classes=2, progress=False)
    with pytest.raises(data.RecordIOError, match=r"holds no image record .* num_images=0"):
        data.read_recordio(path)


def test_index_that_does_not_cover_the_rec_raises(tmp_path):
    path = write_pack(tmp_path / "pack")
    index_path = path[: -len(".rec")] + ".idx"
    lines = open(index_path).read().splitlines()
    with open(index_path, "w") as file:  # the last 3 lines lost
        file.write("\n".join(lines[:-3]) + "\n")
    with pytest.raises(data.RecordIOError, match=r"records .* end at offset \d+: the \.idx is"):
        data.RecordIOImagePack(path)
    with open(index_path, "w") as file:  # record 5 missing in the middle
        file.write("\n".join(lines[:5] + lines[6:]) + "\n")
    with pytest.raises(data.RecordIOError, match=r"is not listed in the index"):
        data.RecordIOImagePack(path)
    key, offset = lines[3].split("\t")
    with open(index_path, "w") as file:  # two keys pointing at one record
        file.write("\n".join(lines + [f"99\t{offset}"]) + "\n")
    with pytest.raises(data.RecordIOError, match=r"overlaps a record of the index"):
        data.RecordIOImagePack(path)
    with open(index_path, "w") as file:
        file.write("\n".join(lines[:-1] + ["30\t99999999999999999999999"]) + "\n")
    with pytest.raises(data.RecordIOError, match=r"not a 64-bit integer"):
        data.RecordIOImagePack(path)


# --------------------------------------------------------------------- image folders


def write_folder(directory, count=8, image_format="jpeg"):
    labels = np.repeat(np.arange(2), count // 2)
    data.write_image_folder(
        directory, make_images(count, seed=7), labels, progress=False, image_format=image_format
    )
    return str(directory)


def test_special_and_broken_entries_are_skipped_and_counted(tmp_path):
    root = write_folder(tmp_path / "faces")
    os.mkfifo(os.path.join(root, "00000", "pipe.jpg"))  # must never block the reader
    os.symlink(os.path.join(root, "nowhere.jpg"), os.path.join(root, "00000", "dangling.jpg"))
    os.symlink(os.path.join(root, "00001", "b.jpg"), os.path.join(root, "00001", "a.jpg"))
    os.symlink(os.path.join(root, "00001", "a.jpg"), os.path.join(root, "00001", "b.jpg"))
    os.symlink(os.path.join(root, "00000"), os.path.join(root, "00001", "linked"))

    scan = data.scan_image_folder(root)
    reasons = {os.path.basename(path): reason for path, _, reason in scan.unreadable}
    assert reasons == {
        "pipe.jpg": "not a regular file",
        "dangling.jpg": "missing (or a dangling symbolic link)",
        "a.jpg": "a symbolic link loop",
        "b.jpg": "a symbolic link loop",
        "linked": "a symbolic link to a directory (not followed: follow_links=False)",
    }
    assert len(scan.paths) == 8

    faces = data.read_image_folder(root, batch_size=3, shuffle=False)
    delivered = sum(len(labels) for _, labels in faces.dataset)
    assert faces.num_images == 13 and delivered == faces.stats.delivered == 8
    assert faces.stats.skipped == 5
    assert faces.stats.skip_reasons[os.path.join("00000", "pipe.jpg")] == "not a regular file"

    with pytest.raises(data.UndecodableImageError, match=r"dangling\.jpg' \(missing .*4 more"):
        data.read_image_folder(root, strict=True)
    # The folder's own files are never opened: packing skips them the same way.
    summary = data.pack_image_folder(root, tmp_path / "out.rec", progress=False)
    assert summary["num_images"] == 8 and summary["num_skipped"] == 5


def test_unreadable_file_and_directory_are_skipped_and_counted(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "faces")
    os.makedirs(os.path.join(root, "00002"))
    data.write_image_folder(
        os.path.join(tmp_path, "other"), make_images(2, seed=3), [0, 0], progress=False
    )
    shutil.copy(os.path.join(tmp_path, "other", "00000", "000000.png"), root + "/00002/x.png")
    locked_file = os.path.join(root, "00000", "000001.jpg")
    locked_directory = os.path.join(root, "00002")
    # Tests may run as root, for whom permissions do not apply: refuse like the kernel would.
    real_open, real_scandir = os.open, os.scandir

    def refusing_open(path, *args, **kwargs):
        if os.fspath(path) == locked_file:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    def refusing_scandir(path="."):
        if os.fspath(path) == locked_directory:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "scandir", refusing_scandir)
    faces = data.read_image_folder(root, batch_size=4, shuffle=False)
    assert faces.num_classes == 3
    got = sum(len(labels) for _, labels in faces.dataset)
    assert got == 7 and faces.stats.skipped == 2
    assert faces.stats.skip_reasons == {
        os.path.join("00000", "000001.jpg"): "permission denied",
        "00002": "directory permission denied",
    }


def test_chmod_000_file_is_skipped(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    root = write_folder(tmp_path / "faces")
    os.chmod(os.path.join(root, "00000", "000000.jpg"), 0)
    faces = data.read_image_folder(root, shuffle=False)
    assert sum(1 for _ in faces.dataset) == 7 and faces.stats.skipped == 1


@pytest.mark.parametrize("policy, delivered", [("resize", 9), ("skip", 8)])
def test_image_of_another_size_is_resized_or_skipped(tmp_path, policy, delivered):
    root = write_folder(tmp_path / "faces")
    odd = make_images(1, height=24, width=20, seed=9)[0]
    with open(os.path.join(root, "00001", "odd.png"), "wb") as file:
        file.write(encode(odd))
    # No image_size: the first image's size (16x20) is used, batches never fail.
    faces = data.read_image_folder(root, batch_size=4, shuffle=False, size_mismatch=policy)
    shapes = [images.shape[1:] for images, _ in faces.dataset.as_numpy_iterator()]
    assert set(shapes) == {(16, 20, 3)}
    assert faces.stats.delivered == delivered and faces.stats.skipped == 9 - delivered
    if policy == "skip":
        assert faces.stats.skip_reasons == {
            os.path.join("00001", "odd.png"): "24x20 pixels, not image_size 16x20"
        }
        strict = data.read_image_folder(
            root, batch_size=4, shuffle=False, strict=True, size_mismatch="skip"
        )
        with pytest.raises(Exception, match=r"odd\.png: 24x20 pixels, not image_size 16x20"):
            list(strict.dataset)
    with pytest.raises(ValueError, match=r"Received: size_mismatch='crop'"):
        data.ReadOptions(size_mismatch="crop")


def test_empty_folder_raises_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: the image folder has no identity"):
        data.read_image_folder(empty, batch_size=4)
    (empty / "alice").mkdir()
    with pytest.raises(DataError, match=r"empty: the 1 identity directories hold no image"):
        data.read_image_folder(empty, batch_size=4)


def test_pack_of_an_empty_folder_fails_and_leaves_no_rec(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "alice").mkdir(parents=True)
    output = tmp_path / "out.rec"
    with pytest.raises(DataError, match="hold no image"):
        data.pack_image_folder(empty, output, progress=False)
    assert not output.exists() and not (tmp_path / "out.idx").exists()
    status = cli.main(["pack", "--images", str(empty), "--output", str(output)])
    error = capsys.readouterr().err
    assert status == 1 and error.count("\n") == 1 and "hold no image" in error
    assert not output.exists() and not (tmp_path / "property").exists()
    # Every file undecodable: nothing packed, no files left.
    with open(empty / "alice" / "broken.jpg", "wb") as file:
        file.write(b"\xff\xd8\xff\xe0 not an image")
    with pytest.raises(DataError, match=r"none of the 1 image files could be read"):
        data.pack_image_folder(empty, output, progress=False)
    assert not output.exists() and not (tmp_path / "out.idx").exists()


# --------------------------------------------------------------------- counts and console


def test_skipped_images_count_once_over_several_passes(tmp_path):
    root = write_folder(tmp_path / "faces")
    with open(os.path.join(root, "00000", "000000.jpg"), "wb") as file:
        file.write(b"\xff\xd8\xff\xe0 not an image")
    faces = data.read_image_folder(root, batch_size=7, shuffle=False)
    for _ in range(2):  # two passes
        assert [len(labels) for _, labels in faces.dataset.as_numpy_iterator()] == [7]
    assert faces.stats.passes_completed == 2
    key = os.path.join("00000", "000000.jpg")
    assert faces.stats.skipped == 1 and faces.stats.skip_events == 2
    assert faces.stats.skipped_keys == [key]
    summary = faces.stats.summary()
    assert "1 images skipped" in summary and summary.count(key) == 1


def test_damaged_jpeg_header_never_reaches_libjpeg(tmp_path, capfd):
    root = write_folder(tmp_path / "faces")
    good = open(os.path.join(root, "00000", "000000.jpg"), "rb").read()
    for index, cut in enumerate((3, 10, 100)):
        with open(os.path.join(root, "00001", f"cut{index}.jpg"), "wb") as file:
            file.write(good[:cut])
    capfd.readouterr()
    faces = data.read_image_folder(root, shuffle=False)
    assert sum(1 for _ in faces.dataset) == 8 and faces.stats.skipped == 3
    assert "Improper call to JPEG library" not in capfd.readouterr().err
    reasons = faces.stats.skip_reasons
    assert reasons[os.path.join("00001", "cut1.jpg")].startswith("JPEG cut or damaged")
    assert image_codec.jpeg_header_problem(good) is None


def test_special_file_is_never_opened_for_reading(tmp_path):
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    with pytest.raises(OSError, match=r"not a regular file \(a named pipe\)"):
        image_codec.read_regular_file(pipe)  # returns at once: O_NONBLOCK + fstat


# --------------------------------------------------------------------- .bin files


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("garbage", bytes(range(256)) * 3, r"garbage\.bin: "),
        ("frame", b"\x80\x04\x95" + b"\xff" * 40, r"frame\.bin: not a verification \.bin"),
        ("truncated", pickle.dumps(([b"x" * 50] * 2, [True]))[:40], r"truncated\.bin: "),
        ("empty", b"", r"empty\.bin: the pickle ends early"),
        ("malicious", b"cos\nsystem\n(S'echo hacked'\ntR.", r"Refusing to load the global os"),
        ("wrong", pickle.dumps({"a": 1}), r"wrong\.bin: A verification \.bin file must hold"),
    ],
)
def test_bin_errors_name_the_file(tmp_path, capsys, name, content, expected):
    path = tmp_path / f"{name}.bin"
    path.write_bytes(content)
    with pytest.raises(data.VerificationBinError, match=expected) as error:
        data.read_bin(path, progress=False)
    assert isinstance(error.value, cli.expected_errors())  # one line at the CLI
    assert str(path) in str(error.value)


def test_bin_that_is_a_pipe_raises_at_once(tmp_path):
    pipe = tmp_path / "pairs.bin"
    os.mkfifo(pipe)
    with pytest.raises(data.VerificationBinError, match=r"pairs\.bin: cannot be read \(not a"):
        data.read_bin(pipe, progress=False)


# --------------------------------------------------------------------- corruption suite


def _flip(position, mask=0xFF):
    def corrupt(rec, idx, offsets):
        rec = bytearray(rec)
        rec[position(offsets, len(rec))] ^= mask
        return bytes(rec), idx

    return corrupt


def _cut(length):
    return lambda rec, idx, offsets: (rec[: length(offsets, len(rec))], idx)


def _index(edit):
    def corrupt(rec, idx, offsets):
        lines = idx.splitlines()
        return rec, "\n".join(edit(lines, offsets)) + "\n"

    return corrupt


# Offsets inside a record: +0 magic, +4 length/cflag, +8 IRHeader flag, +12 label,
# +16 id, +32 first label of a label array (header and identity records), +32 image data.
CORRUPTIONS = {
    "rec_cut_10%": _cut(lambda o, n: n // 10),
    "rec_cut_30%": _cut(lambda o, n: 3 * n // 10),
    "rec_cut_50%": _cut(lambda o, n: n // 2),
    "rec_cut_90%": _cut(lambda o, n: 9 * n // 10),
    "rec_cut_last_byte": _cut(lambda o, n: n - 1),
    "rec_cut_last_word": _cut(lambda o, n: n - 4),
    "rec_cut_inside_image_7": _cut(lambda o, n: o[7] + 40),
    "header_magic": _flip(lambda o, n: o[0]),
    "header_length": _flip(lambda o, n: o[0] + 4, 0x01),
    "header_cflag": _flip(lambda o, n: o[0] + 7, 0x20),
    "header_flag": _flip(lambda o, n: o[0] + 8, 0x02),
    "header_flag_high_bit": _flip(lambda o, n: o[0] + 11, 0x80),
    "header_first_label": _flip(lambda o, n: o[0] + 35, 0x40),
    "header_end_label": _flip(lambda o, n: o[0] + 39, 0x7F),
    "image_magic": _flip(lambda o, n: o[5]),
    "image_length": _flip(lambda o, n: o[5] + 5, 0x10),
    "image_flag": _flip(lambda o, n: o[5] + 8, 0x01),
    "image_label_exponent": _flip(lambda o, n: o[5] + 15, 0x20),
    "image_label_mantissa": _flip(lambda o, n: o[5] + 13, 0x01),
    "image_id": _flip(lambda o, n: o[5] + 16),
    "image_jpeg_soi": _flip(lambda o, n: o[5] + 33),
    "image_jpeg_header": _flip(lambda o, n: o[5] + 32 + 20),
    "image_jpeg_data": _flip(lambda o, n: (o[5] + o[6]) // 2 + 16),
    "identity_label": _flip(lambda o, n: o[26] + 35, 0x40),
    "idx_empty": lambda rec, idx, o: (rec, ""),
    "idx_last_line_lost": _index(lambda lines, o: lines[:-1]),
    "idx_first_line_lost": _index(lambda lines, o: lines[1:]),
    "idx_image_line_lost": _index(lambda lines, o: lines[:3] + lines[4:]),
    "idx_offset_plus_4": _index(lambda lines, o: lines[:3] + [f"3\t{o[3] + 4}"] + lines[4:]),
    "idx_offsets_swapped": _index(
        lambda lines, o: lines[:3] + [f"3\t{o[4]}", f"4\t{o[3]}"] + lines[5:]
    ),
    "idx_duplicate_key": _index(lambda lines, o: lines[:3] + [f"2\t{o[3]}"] + lines[4:]),
    "idx_not_a_number": _index(lambda lines, o: lines[:3] + ["3\tabc"] + lines[4:]),
    "idx_odd_fields": _index(lambda lines, o: lines + ["31"]),
    "idx_past_the_end": _index(lambda lines, o: lines + [f"31\t{10**9}"]),
}


@pytest.fixture(scope="module")
def clean_pack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clean")
    path = write_pack(directory, image_format="jpeg")
    rec = open(path, "rb").read()
    idx = open(path[: -len(".rec")] + ".idx").read()
    with data.RecordIOReader(path) as reader:
        offsets = dict(zip(reader.keys.tolist(), reader.offsets.tolist()))
    return rec, idx, offsets, open(os.path.join(directory, "property")).read()


def assert_raises_naming_file_or_counts_everything(directory, missing_ok=False):
    """The invariant of every damaged pack: a DataError naming a file, or all accounted for."""
    path = os.path.join(directory, "train.rec")
    try:
        faces = data.read_recordio(path, shuffle=False, batch_size=5)
        labels = np.concatenate([labels for _, labels in faces.dataset.as_numpy_iterator()])
    except DataError as error:
        message = str(error)
        assert "train.rec" in message or "train.idx" in message or "property" in message
        return "raised"
    except FileNotFoundError as error:
        assert missing_ok and "train.rec" in str(error)
        return "missing"
    assert len(labels) + faces.stats.skipped == faces.num_images
    assert faces.num_classes <= 31 and labels.max() < faces.num_classes
    return "skipped" if faces.stats.skipped else "read"


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_pack_raises_or_counts(tmp_path, clean_pack, name):
    rec, idx, offsets, property_text = clean_pack
    rec, idx = CORRUPTIONS[name](rec, idx, offsets)
    (tmp_path / "train.rec").write_bytes(rec)
    (tmp_path / "train.idx").write_text(idx)
    (tmp_path / "property").write_text(property_text)
    outcome = assert_raises_naming_file_or_counts_everything(tmp_path)
    # Two keys swapping offsets still tile the file: the records are read under each
    # other's key (both hold class 0 here), which nothing in the format can reveal.
    structural = name.startswith(("rec_cut", "header_", "idx_")) and name != "idx_offsets_swapped"
    if structural or name in ("image_magic", "image_length"):
        assert outcome == "raised", name  # structural: never a partial read
    if name == "image_jpeg_header":
        assert outcome == "skipped"


@pytest.mark.parametrize(
    "files", [("train.idx",), ("property",), ("train.idx", "property"), ("train.rec",)]
)
def test_missing_files_of_a_pack(tmp_path, clean_pack, files):
    rec, idx, _, property_text = clean_pack
    (tmp_path / "train.rec").write_bytes(rec)
    (tmp_path / "train.idx").write_text(idx)
    (tmp_path / "property").write_text(property_text)
    for name in files:
        os.remove(tmp_path / name)
    outcome = assert_raises_naming_file_or_counts_everything(tmp_path, missing_ok=True)
    assert outcome == ("missing" if files == ("train.rec",) else "read")


@pytest.mark.slow
def test_random_corruptions_raise_or_count(tmp_path, clean_pack):
    rec, idx, offsets, property_text = clean_pack
    rng = np.random.default_rng(15)
    outcomes = {}
    for trial in range(200):
        damaged_rec, damaged_idx = bytearray(rec), idx
        kind = rng.integers(4)
        if kind == 0:  # one to three random bit flips
            for position in rng.integers(0, len(rec), rng.integers(1, 4)):
                damaged_rec[position] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # a flip in the first 40 bytes of a random record
            key = int(rng.integers(0, 31))
            damaged_rec[offsets[key] + int(rng.integers(0, 40))] ^= 1 << int(rng.integers(8))
        elif kind == 2:  # a random cut
            damaged_rec = damaged_rec[: int(rng.integers(0, len(rec)))]
        else:  # a random byte of the .idx replaced
            position = int(rng.integers(0, len(idx)))
            damaged_idx = idx[:position] + chr(int(rng.integers(32, 127))) + idx[position + 1 :]
        directory = tmp_path / str(trial)
        directory.mkdir()
        (directory / "train.rec").write_bytes(bytes(damaged_rec))
        (directory / "train.idx").write_text(damaged_idx)
        (directory / "property").write_text(property_text)
        outcome = assert_raises_naming_file_or_counts_everything(directory)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("raised", 0) > 50, outcomes


@pytest.mark.parametrize("fmt", ["recordio", "tfrecord"])
def test_packs_with_an_image_of_another_size_batch(tmp_path, fmt):
    images = list(make_images(6, seed=4))
    odd = make_images(1, height=24, width=20, seed=5)[0]
    samples = [(encode(image), 0) for image in images] + [(encode(odd), 1)]
    if fmt == "recordio":
        path = str(tmp_path / "train.rec")
        data.write_recordio(path, samples, progress=False)
        read = data.read_recordio
    else:
        path = data.write_tfrecord(tmp_path / "train.tfrecord", samples, progress=False)
        read = functools.partial(data.read_tfrecord, num_classes=2)
    resized = read(path, batch_size=4, shuffle=False)
    batches = list(resized.dataset.as_numpy_iterator())
    assert [images.shape for images, _ in batches] == [(4, 16, 20, 3), (3, 16, 20, 3)]
    skipping = read(path, batch_size=4, shuffle=False, size_mismatch="skip")
    assert sum(len(labels) for _, labels in skipping.dataset) == 6
    assert skipping.stats.skipped == 1


def test_empty_tfrecord_raises(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.tfrecord\). Received: 0 records"):
        data.read_tfrecord(path)
