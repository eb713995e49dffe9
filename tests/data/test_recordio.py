import logging
import os
import struct

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face.data.image_codec import decode_image  # noqa: E402
from tests.data.image_testing import encode  # noqa: E402
from tests.data.image_testing import make_images  # noqa: E402

pytestmark = pytest.mark.tf_only

MAGIC = struct.pack("<I", data.RECORDIO_MAGIC)


def frames_of(raw):
    """Parses a .rec byte string into (offset, cflag, payload) frames, without the reader."""
    frames, offset = [], 0
    while offset < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, offset)
        assert magic == data.RECORDIO_MAGIC
        length = lrec & ((1 << 29) - 1)
        frames.append((offset, lrec >> 29, raw[offset + 8 : offset + 8 + length]))
        offset += 8 + (length + 3) // 4 * 4
    return frames


def read_all(faces):
    images, labels = [], []
    for image, label in faces.dataset.as_numpy_iterator():
        images.append(image)
        labels.append(int(label))
    return images, labels


def test_header_pack_unpack_matches_mxnet_layout():
    record = data.pack_header(data.IRHeader(0, 7.0, 3, 0), b"abc")
    assert record[:24] == struct.pack("<IfQQ", 0, 7.0, 3, 0) and record[24:] == b"abc"
    header, payload = data.unpack_header(record)
    assert header == data.IRHeader(0, 7.0, 3, 0) and payload == b"abc"

    record = data.pack_header((0, [2.0, 5.5], 9, 1), b"xy")
    assert struct.unpack_from("<IfQQ", record) == (2, 0.0, 9, 1)
    assert np.frombuffer(record[24:32], "<f4").tolist() == [2.0, 5.5]
    header, payload = data.unpack_header(record)
    assert header.flag == 2 and header.label.tolist() == [2.0, 5.5] and payload == b"xy"
    with pytest.raises(ValueError, match="too short"):
        data.unpack_header(b"\0" * 10)


def test_records_with_magic_word_are_split_and_rebuilt(tmp_path):
    path = str(tmp_path / "parts.rec")
    records = [
        b"abcd" + MAGIC + b"efgh" + MAGIC + MAGIC + b"ij",  # two splits, one empty middle part
        MAGIC + b"tail",  # magic at offset 0: empty first part
        b"xy" + MAGIC + b"zw",  # magic at an unaligned offset: no split
        b"1234" + MAGIC,  # magic as the last aligned word: empty last part
        b"",
        b"plain record",
    ]
    with data.RecordIOWriter(path) as writer:
        offsets = [writer.write(record, key=10 + i) for i, record in enumerate(records)]
    raw = open(path, "rb").read()
    frames = frames_of(raw)
    # dmlc-core layout: parts without the magic word, cflags 1 (start), 2 (middle), 3 (end).
    assert [(cflag, payload) for _, cflag, payload in frames[:4]] == [
        (1, b"abcd"),
        (2, b"efgh"),
        (2, b""),
        (3, b"ij"),
    ]
    assert [(cflag, payload) for _, cflag, payload in frames[4:6]] == [(1, b""), (3, b"tail")]
    assert (frames[6][1], frames[6][2]) == (0, b"xy" + MAGIC + b"zw")
    assert [(cflag, payload) for _, cflag, payload in frames[7:9]] == [(1, b"1234"), (3, b"")]
    assert [frame[0] for frame in frames if frame[1] in (0, 1)] == offsets
    assert open(str(tmp_path / "parts.idx")).read().splitlines()[0] == f"10\t{offsets[0]}"

    with data.RecordIOReader(path) as reader:
        assert [reader.read(10 + i) for i in range(len(records))] == records
        assert [record for _, record in reader] == records
    with data.RecordIOReader(path, index_path=None) as scanned:  # no .idx: scan the file
        assert scanned.keys.tolist() == list(range(len(records)))
        assert [scanned.read(i) for i in range(len(records))] == records


def test_image_folder_to_recordio_round_trip(tmp_path):
    images = make_images(12, seed=1)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])
    paths = data.write_image_folder(
        tmp_path / "faces", images, labels, image_format="png", progress=False
    )
    # One identity stored as JPEG: packed byte for byte, so it decodes like the file.
    jpeg_path = os.path.join(str(tmp_path / "faces"), "00003", "extra.jpg")
    with open(jpeg_path, "wb") as file:
        file.write(encode(images[0], "JPEG"))

    summary = data.pack_image_folder(
        tmp_path / "faces", tmp_path / "pack" / "train.rec", progress=False
    )
    assert (
        summary["num_images"] == 13 and summary["num_classes"] == 5 and summary["num_skipped"] == 0
    )
    assert open(str(tmp_path / "pack" / "property")).read() == "5,16,20"

    pack = data.RecordIOImagePack(tmp_path / "pack" / "train.rec")
    assert pack.layout == "insightface" and pack.num_classes == 5
    np.testing.assert_array_equal(pack.keys, np.arange(1, 14))
    np.testing.assert_array_equal(
        pack.identity_ranges, [[1, 4], [4, 6], [6, 10], [10, 12], [12, 14]]
    )
    assert pack.read_image(10) == open(jpeg_path, "rb").read()

    dataset = data.read_recordio(tmp_path / "pack" / "train.rec", shuffle=False)
    assert dataset.num_classes == 5 and dataset.num_images == 13 and dataset.layout == "insightface"
    got_images, got_labels = read_all(dataset)
    expected_paths, expected_labels, _ = data.list_image_folder(tmp_path / "faces")
    assert got_labels == expected_labels.tolist()
    for image, path in zip(got_images, expected_paths):
        assert image.dtype == np.uint8
        # Decoded like Pillow (libjpeg's accurate IDCT, the reader's default jpeg_dct_method).
        np.testing.assert_array_equal(image, decode_image(open(path, "rb").read()))
    for path, image in zip(paths, images):  # PNG: exactly the original pixels
        np.testing.assert_array_equal(got_images[expected_paths.index(path)], image)
    assert dataset.stats.skipped == 0 and dataset.stats.delivered == 13


def test_plain_im2rec_layout_and_label_arrays(tmp_path):
    images = make_images(6, seed=2)
    path = str(tmp_path / "plain.rec")
    with data.RecordIOWriter(path) as writer:
        for key, image in enumerate(images):
            # im2rec with label arrays: the first label is the class id (insightface rule).
            label = float(5 - key) if key % 2 else [float(5 - key), 99.0]
            writer.write(data.pack_header(data.IRHeader(0, label, key, 0), encode(image)), key=key)
    pack = data.RecordIOImagePack(path)
    assert pack.layout == "plain" and pack.num_classes == 6 and pack.identity_ranges is None
    got_images, got_labels = read_all(data.read_recordio(path, shuffle=False))
    assert got_labels == [5, 4, 3, 2, 1, 0]
    np.testing.assert_array_equal(np.stack(got_images), images)

    # write_recordio's plain layout reads back the same way.
    data.write_recordio(
        tmp_path / "w" / "plain.rec",
        zip(images, [3, 1, 3, 0, 2, 1]),
        layout="plain",
        image_format="png",
        progress=False,
    )
    got_images, got_labels = read_all(
        data.read_recordio(tmp_path / "w" / "plain.rec", shuffle=False)
    )
    assert got_labels == [3, 1, 3, 0, 2, 1]
    np.testing.assert_array_equal(np.stack(got_images), images)
    with pytest.raises(data.RecordIOError, match="layout='insightface'"):
        data.RecordIOImagePack(tmp_path / "w" / "plain.rec", layout="insightface")


def test_image_record_split_by_magic_word_reads_back(tmp_path):
    image = make_images(1, seed=3)[0]
    png = encode(image)
    # Trailing bytes after IEND are ignored by decoders; put the magic word at an aligned
    # offset of the record (24-byte header + data).
    padding = (-(24 + len(png))) % 4
    payload = png + b"\0" * padding + MAGIC + b"end!"
    path = str(tmp_path / "split.rec")
    data.write_recordio(
        path, [(payload, 0), (encode(image[::-1]), 1)], image_format="png", progress=False
    )
    reader = data.RecordIOReader(path)
    assert reader.cflags.tolist().count(1) == 1  # the first image record is multi-part
    got_images, got_labels = read_all(data.read_recordio(path, shuffle=False))
    assert got_labels == [0, 1]
    np.testing.assert_array_equal(got_images[0], image)
    np.testing.assert_array_equal(got_images[1], image[::-1])


def test_structural_errors_name_file_and_offset(tmp_path):
    images = make_images(4, seed=4)
    path = str(tmp_path / "train.rec")
    data.write_recordio(path, zip(images, [0, 0, 1, 1]), image_format="png", progress=False)
    raw = open(path, "rb").read()
    offsets = data.RecordIOReader(path).offsets.tolist()

    # A download cut inside the last image: the identity records' offsets are past the end.
    truncated = str(tmp_path / "truncated.rec")
    open(truncated, "wb").write(raw[: offsets[4] + 20])
    open(str(tmp_path / "truncated.idx"), "w").write(open(str(tmp_path / "train.idx")).read())
    with pytest.raises(
        data.RecordIOError,
        match=rf"truncated\.idx: key 5 points to offset {offsets[5]}, past the end of "
        rf".*truncated\.rec \({offsets[4] + 20} bytes\): the \.rec is truncated",
    ):
        data.read_recordio(truncated)
    # Cut inside the last record itself (plain layout: the last record is an image).
    plain = str(tmp_path / "plain.rec")
    data.write_recordio(
        plain, zip(images, [0, 0, 1, 1]), layout="plain", image_format="png", progress=False
    )
    plain_raw = open(plain, "rb").read()
    last = data.RecordIOReader(plain).offsets[-1]
    open(plain, "wb").write(plain_raw[: last + 30])
    with pytest.raises(
        data.RecordIOError,
        match=rf"plain\.rec is truncated: the record at offset {last} \(key 3\) needs \d+ bytes",
    ):
        data.read_recordio(plain)
    with pytest.raises(
        data.RecordIOError, match=rf"plain\.rec is truncated: the frame at offset {last}"
    ):
        data.RecordIOReader(plain, index_path=None)

    corrupt = bytearray(raw)
    corrupt[offsets[2] : offsets[2] + 4] = b"\x01\x02\x03\x04"
    bad_magic = str(tmp_path / "magic.rec")
    open(bad_magic, "wb").write(bytes(corrupt))
    open(str(tmp_path / "magic.idx"), "w").write(open(str(tmp_path / "train.idx")).read())
    with pytest.raises(
        data.RecordIOError, match=rf"magic\.rec: wrong magic word 0x04030201 at offset {offsets[2]}"
    ):
        data.read_recordio(bad_magic)
    with pytest.raises(data.RecordIOError, match=rf"wrong magic word .* at offset {offsets[2]}"):
        data.RecordIOReader(bad_magic, index_path=None)  # scanning finds it too

    far = str(tmp_path / "far.rec")
    open(far, "wb").write(raw)
    open(str(tmp_path / "far.idx"), "w").write(f"0\t{offsets[0]}\n1\t{len(raw) + 100}\n")
    with pytest.raises(
        data.RecordIOError,
        match=rf"far\.idx: key 1 points to offset {len(raw) + 100}, past the end",
    ):
        data.read_recordio(far)


def test_non_integer_label_is_an_error_naming_the_key(tmp_path):
    path = str(tmp_path / "labels.rec")
    with data.RecordIOWriter(path) as writer:
        for key, label in enumerate([0.0, 1.0, 2.5]):
            writer.write(data.pack_header((0, label, key, 0), encode(make_images(1)[0])), key=key)
    with pytest.raises(
        ValueError, match=r"key 2\) has label 2\.5, which is not an integer class id"
    ):
        data.read_recordio(path)
    with pytest.raises(ValueError, match="contiguous"):
        data.write_recordio(tmp_path / "x.rec", zip(make_images(3), [0, 1, 0]), progress=False)
    with pytest.raises(ValueError, match="integer class ids"):
        data.write_recordio(tmp_path / "y.rec", zip(make_images(1), [1.5]), progress=False)


def test_corrupt_images_are_skipped_counted_and_strict_raises(tmp_path, caplog):
    images = make_images(40, seed=5)
    samples = [(encode(image), index // 4) for index, image in enumerate(images)]
    samples[7] = (b"\xff\xd8\xff\xe0 not really a jpeg", 1)
    samples[39] = (encode(images[39])[:60], 9)  # truncated PNG, last record of the pass
    path = str(tmp_path / "bad.rec")
    data.write_recordio(path, samples, progress=False)

    stats = data.DataStats()
    dataset = data.read_recordio(path, shuffle=False, stats=stats)
    with caplog.at_level(logging.WARNING, logger="keras_face.data"):
        got_images, got_labels = read_all(dataset)
    kept = [i for i in range(40) if i not in (7, 39)]
    assert got_labels == [i // 4 for i in kept]  # nothing shifted
    np.testing.assert_array_equal(np.stack(got_images), images[kept])
    assert dataset.stats is stats
    assert stats.skipped == 2 and sorted(stats.skipped_keys) == [8, 40]
    assert stats.delivered == 38 and stats.passes_completed == 1 and stats.last_pass_skipped == 2
    assert "skipped 2 undecodable images in pass 1" in caplog.text

    # Batched, shuffled, repeated: counts stay exact per pass.
    batched = data.read_recordio(path, batch_size=8, seed=3, repeat=True, drop_remainder=True)
    labels_seen = [batch_labels for _, batch_labels in batched.dataset.take(8).as_numpy_iterator()]
    assert all(len(batch) == 8 for batch in labels_seen)
    assert batched.stats.passes_completed >= 1 and batched.stats.last_pass_skipped == 2

    callback = data.DataStatsCallback(dataset, verbose=0)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["skipped_images"] == 2

    strict = data.read_recordio(path, shuffle=False, strict=True)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"Undecodable image in .*bad\.rec at key 8 \(record offset",
    ):
        read_all(strict)


def test_shuffle_shards_flip_and_preprocessing(tmp_path):
    images = make_images(30, seed=6)
    labels = np.arange(30) // 3
    path = str(tmp_path / "train.rec")
    data.write_recordio(path, zip(images, labels), image_format="png", progress=False)
    by_label = {}
    for image, label in zip(images, labels):
        by_label.setdefault(int(label), []).append(image)

    def ids(dataset):
        # Identify each image by its pixels (labels repeat).
        return [
            int(np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0])
            for image, _ in dataset.dataset.as_numpy_iterator()
        ]

    first = data.read_recordio(path, seed=7)
    order_a, order_b = ids(first), ids(first)
    assert sorted(order_a) == list(range(30)) and order_a != order_b  # reshuffled each pass
    assert ids(data.read_recordio(path, seed=7)) == order_a  # reproducible from the seed

    shards = [
        ids(data.read_recordio(path, num_shards=3, shard_index=i, shuffle=False)) for i in range(3)
    ]
    assert shards == [list(range(i, 30, 3)) for i in range(3)]
    with pytest.raises(ValueError, match="shard_index"):
        data.read_recordio(path, num_shards=2, shard_index=2)

    flipped = data.read_recordio(path, shuffle=False, flip=True, seed=1)
    first_pass = [image for image, _ in flipped.dataset.as_numpy_iterator()]
    mirrored = 0
    for image, original in zip(first_pass, images):
        if np.array_equal(image, original[:, ::-1]):
            mirrored += 1
        else:
            np.testing.assert_array_equal(image, original)
    assert 5 <= mirrored <= 25
    # Reproducible from the seed, and a new coin per image in every pass.
    again = [
        image
        for image, _ in data.read_recordio(
            path, shuffle=False, flip=True, seed=1
        ).dataset.as_numpy_iterator()
    ]
    np.testing.assert_array_equal(np.stack(again), np.stack(first_pass))
    second_pass = [image for image, _ in flipped.dataset.as_numpy_iterator()]
    assert not np.array_equal(np.stack(second_pass), np.stack(first_pass))

    batches = list(
        data.read_recordio(
            path, batch_size=8, shuffle=False, preprocessing="arcface"
        ).dataset.as_numpy_iterator()
    )
    assert [len(batch_labels) for _, batch_labels in batches] == [8, 8, 8, 6]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    np.testing.assert_allclose(
        batches[0][0], (images[:8].astype(np.float32) - 127.5) / 128.0, atol=1e-6
    )
    insight = next(
        data.read_recordio(
            path, batch_size=4, shuffle=False, preprocessing="insightface"
        ).dataset.as_numpy_iterator()
    )
    np.testing.assert_allclose(
        insight[0], (images[:4].astype(np.float32) - 127.5) / 127.5, atol=1e-6
    )

    resized = next(
        data.read_recordio(
            path, batch_size=2, shuffle=False, image_size=8
        ).dataset.as_numpy_iterator()
    )
    assert resized[0].shape == (2, 8, 8, 3) and resized[0].dtype == np.uint8

    def brighten(batch):
        return tf.cast(batch, tf.float32) + 1.0

    augmented = next(
        data.read_recordio(
            path, batch_size=3, shuffle=False, augmentation=brighten, preprocessing="arcface"
        ).dataset.as_numpy_iterator()
    )
    np.testing.assert_allclose(
        augmented[0], (images[:3].astype(np.float32) + 1.0 - 127.5) / 128.0, atol=1e-5
    )


def test_pack_image_folder_skips_and_reports_undecodable_files(tmp_path, caplog):
    images = make_images(6, seed=8)
    data.write_image_folder(tmp_path / "faces", images, [0, 0, 1, 1, 2, 2], progress=False)
    broken = tmp_path / "faces" / "00001" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    with caplog.at_level(logging.WARNING, logger="keras_face.data"):
        summary = data.pack_image_folder(tmp_path / "faces", tmp_path / "out.rec", progress=False)
    assert summary["num_images"] == 6 and summary["skipped"] == [str(broken)]
    assert "skipped 1 undecodable files" in caplog.text
    _, labels = read_all(data.read_recordio(tmp_path / "out.rec", shuffle=False))
    assert labels == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="broken.png"):
        data.pack_image_folder(
            tmp_path / "faces", tmp_path / "strict.rec", strict=True, progress=False
        )

    summary = data.pack_image_folder(
        tmp_path / "faces", tmp_path / "small.rec", image_size=8, progress=False
    )
    small, _ = read_all(data.read_recordio(tmp_path / "small.rec", shuffle=False))
    assert summary["image_shape"] == (8, 8) and all(image.shape == (8, 8, 3) for image in small)


def write_rec_builder_pack(directory, images, labels):
    """A pack as insightface's python-package `RecBuilder` writes it.

    Images at keys 0..N-1 (plain layout), each header's id its key, and a two-line
    `property`: `"num_classes,112,112\\n"` then the image count (`widx`) on a line of its own.
    """
    directory.mkdir()
    path = str(directory / "train.rec")
    with data.RecordIOWriter(path) as writer:
        for key, (image, label) in enumerate(zip(images, labels)):
            writer.write(
                data.pack_header(data.IRHeader(0, float(label), key, 0), encode(image)), key=key
            )
    height, width = images.shape[1:3]
    with open(directory / "property", "w") as file:
        file.write("%d,%d,%d\n" % (max(labels) + 1, height, width))
        file.write("%d\n" % len(images))
    return path


def test_two_line_property_of_insightface_rec_builder(tmp_path):
    images = make_images(5, seed=4)
    labels = [0, 0, 1, 2, 2]
    path = write_rec_builder_pack(tmp_path / "pack", images, labels)
    assert open(tmp_path / "pack" / "property").read() == "3,16,20\n5\n"
    pack = data.RecordIOImagePack(path)
    assert (pack.layout, pack.num_classes, pack.num_images) == ("plain", 3, 5)
    assert pack.image_shape == (16, 20)
    faces = data.read_recordio(path, shuffle=False)
    assert (faces.num_classes, faces.num_images) == (3, 5)
    got_images, got_labels = read_all(faces)
    assert got_labels == labels
    np.testing.assert_array_equal(np.stack(got_images), images)


def test_property_image_count_must_match_the_pack(tmp_path):
    images = make_images(5, seed=4)
    path = write_rec_builder_pack(tmp_path / "pack", images, [0, 0, 1, 2, 2])
    property_path = str(tmp_path / "pack" / "property")
    with open(property_path, "w") as file:
        file.write("3,16,20\n7\n")
    with pytest.raises(ValueError) as error:
        data.RecordIOImagePack(path)
    message = str(error.value)
    assert property_path in message and "declares 7 images" in message and "holds 5" in message
    for text in ("3,16,20\n5\n9\n", "3,16,20\nfive\n", "3,16\n5\n", "3,16,20\n-1\n"):
        with open(property_path, "w") as file:
            file.write(text)
        with pytest.raises(ValueError, match="expected `num_classes,height,width`"):
            data.RecordIOImagePack(path)
