"""Checking a RecordIO face pack before hours of training are spent on it.

`verify_recordio_pack` opens a pack the way `read_recordio` does (every header, the index and
the `property` file) and then checks what a reader alone does not: that the identity records
of an insightface pack tile the image keys and agree with the image labels, that every image
decodes (to the size `property` declares), and, given a checksum list (`md5sum`/`sha256sum`
output), that the files are the ones their maintainers published.
"""

import concurrent.futures
import dataclasses
import hashlib
import os

import numpy as np
from tqdm.auto import tqdm

from keras_face.data.image_codec import decode_image
from keras_face.data.recordio_dataset import RecordIOImagePack
from keras_face.data.recordio_dataset import property_path_of

_HASHES_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256"}
_DECODE_BLOCK = 4096


@dataclasses.dataclass
class PackReport:
    """What `verify_recordio_pack` found: counts, and the problems that fail the check.

    Attributes:
        path: str. The `.rec` file.
        layout: str or `None`. `"insightface"` or `"plain"`; `None` when the pack did not open.
        num_images: int. Image records.
        num_classes: int. Classes (from `property`, the header record or the labels).
        image_shape: `(height, width)` or `None`. What `property` declares.
        property_path: str or `None`. The `property` file, when present.
        label_range: `(min, max)` of the image labels, or `None` for an empty pack.
        empty_classes: int. Classes in `[0, num_classes)` without any image.
        num_decoded: int. Images decoded (0 when decoding was not asked for).
        undecodable_keys: list of int. Keys of images that do not decode.
        wrong_size_keys: list of int. Keys of images whose size differs from `image_shape`.
        checksums: dict of file name to `"ok"`, `"mismatch"` or `"missing"`.
        problems: list of str. Everything that fails the check, one sentence each.

    Example:
        ```python
        report = keras_face.data.verify_recordio_pack("faces_emore/train.rec")
        print(report.summary())
        assert report.ok
        ```
    """

    path: str
    layout: str = None
    num_images: int = 0
    num_classes: int = 0
    image_shape: tuple = None
    property_path: str = None
    label_range: tuple = None
    empty_classes: int = 0
    num_decoded: int = 0
    undecodable_keys: list = dataclasses.field(default_factory=list)
    wrong_size_keys: list = dataclasses.field(default_factory=list)
    checksums: dict = dataclasses.field(default_factory=dict)
    problems: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        """`True` when no problem was found."""
        return not self.problems

    def summary(self):
        """Returns a few lines for a person: the counts, then each problem."""
        lines = [
            f"{self.path}: {self.layout or 'unreadable'} pack, {self.num_images} images, "
            f"{self.num_classes} classes, image shape {self.image_shape}",
        ]
        if self.label_range is not None:
            lines.append(
                f"labels {self.label_range[0]}..{self.label_range[1]}, "
                f"{self.empty_classes} classes without images, {self.num_decoded} decoded"
            )
        if self.checksums:
            counts = {state: list(self.checksums.values()).count(state) for state in ("ok",)}
            lines.append(f"checksums: {counts['ok']} of {len(self.checksums)} files match")
        lines += [f"PROBLEM: {problem}" for problem in self.problems]
        lines.append("OK" if self.ok else f"FAILED ({len(self.problems)} problems)")
        return "\n".join(lines)


def read_checksum_file(path):
    """Reads `md5sum` / `sha1sum` / `sha256sum` output: `<hex digest>  <file name>` lines.

    Args:
        path: str or path-like. The checksum list; names are relative to its folder.

    Returns:
        dict of file name to `(algorithm, lowercase hex digest)`.

    Example:
        ```python
        expected = keras_face.data.read_checksum_file("faces_emore/md5sums.txt")
        ```
    """
    path = os.fspath(path)
    checksums = {}
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.strip().split(None, 1)
            digest = parts[0].lower()
            algorithm = _HASHES_BY_LENGTH.get(len(digest))
            if len(parts) != 2 or algorithm is None or not _is_hex(digest):
                raise ValueError(
                    f"{path}:{number}: expected '<md5, sha1 or sha256 hex digest>  <file name>'. "
                    f"Received: line={line.strip()!r}"
                )
            checksums[parts[1].lstrip("*").strip()] = (algorithm, digest)
    return checksums


def _is_hex(text):
    return all(character in "0123456789abcdef" for character in text)


def file_digest(path, algorithm="md5", block_size=1 << 20):
    """Returns the hex digest of a file, read in blocks.

    Args:
        path: str or path-like. The file.
        algorithm: str. A `hashlib` algorithm name. Defaults to `"md5"`.
        block_size: int. Bytes read at a time. Defaults to `1 << 20`.

    Example:
        ```python
        keras_face.data.file_digest("faces_emore/train.rec", "sha256")
        ```
    """
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(block_size), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _check_identity_ranges(pack, report):
    ranges = pack.identity_ranges
    first, end = pack.header_labels
    if len(ranges) != pack.num_classes:
        report.problems.append(
            f"the header record lists {len(ranges)} identity records (keys {first}..{end - 1}) "
            f"but the pack has {pack.num_classes} classes"
        )
    if not len(ranges):
        return
    starts, ends = ranges[:, 0], ranges[:, 1]
    bad = np.flatnonzero(ends < starts)
    if len(bad):
        report.problems.append(
            f"identity record {first + int(bad[0])} has an empty or reversed range "
            f"[{int(starts[bad[0]])}, {int(ends[bad[0]])})"
        )
        return
    gaps = np.flatnonzero(starts[1:] != ends[:-1])
    if starts[0] != 1 or ends[-1] != first or len(gaps):
        where = (
            f"identity {int(gaps[0]) + 1} starts at key {int(starts[gaps[0] + 1])} but identity "
            f"{int(gaps[0])} ends at key {int(ends[gaps[0]])}"
            if len(gaps)
            else f"they cover keys {int(starts[0])}..{int(ends[-1]) - 1}"
        )
        report.problems.append(
            f"the identity ranges must tile the image keys 1..{first - 1} in order; {where}"
        )
        return
    # Image i has key i + 1 in an insightface pack: each range's labels must be its row.
    expected = np.repeat(np.arange(len(ranges)), ends - starts)
    wrong = np.flatnonzero(pack.labels != expected)
    if len(wrong):
        index = int(wrong[0])
        report.problems.append(
            f"{len(wrong)} images carry a label other than their identity record's, e.g. key "
            f"{pack.image_key(index)} has label {int(pack.labels[index])} but lies in the range "
            f"of identity {int(expected[index])}"
        )


def _decode_size(data):
    try:
        return decode_image(data).shape[:2]
    except Exception:  # Pillow raises many types on bad data
        return None


def _check_images(pack, report, num_threads, progress):
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_threads) as executor:
        with tqdm(
            total=pack.num_images, desc="Decoding images", disable=not progress
        ) as progress_bar:
            for start in range(0, pack.num_images, _DECODE_BLOCK):
                indices = np.arange(start, min(start + _DECODE_BLOCK, pack.num_images))
                payloads = [bytes(payload) for payload in pack.read_images(indices)]
                # Pillow releases the GIL while decoding: threads decode in parallel.
                for index, size in zip(indices, executor.map(_decode_size, payloads)):
                    if size is None:
                        report.undecodable_keys.append(pack.image_key(index))
                    else:
                        report.num_decoded += 1
                        if report.image_shape is not None and tuple(size) != report.image_shape:
                            report.wrong_size_keys.append(pack.image_key(index))
                progress_bar.update(len(indices))
    if report.undecodable_keys:
        report.problems.append(
            f"{len(report.undecodable_keys)} images do not decode, e.g. keys "
            f"{report.undecodable_keys[:5]}"
        )
    if report.wrong_size_keys:
        report.problems.append(
            f"{len(report.wrong_size_keys)} images are not {report.image_shape} as property "
            f"declares, e.g. keys {report.wrong_size_keys[:5]}"
        )


def _check_checksums(checksum_file, report, progress):
    folder = os.path.dirname(os.path.abspath(checksum_file))
    expected = read_checksum_file(checksum_file)
    for name, (algorithm, digest) in tqdm(expected.items(), desc="Checksums", disable=not progress):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            report.checksums[name] = "missing"
            report.problems.append(f"{path} is listed in {checksum_file} but does not exist")
            continue
        actual = file_digest(path, algorithm)
        report.checksums[name] = "ok" if actual == digest else "mismatch"
        if actual != digest:
            report.problems.append(
                f"{path}: {algorithm} is {actual} but {checksum_file} lists {digest}"
            )


def verify_recordio_pack(
    path, checksum_file=None, decode=True, index_path="auto", num_threads=None, progress=True
):
    """Checks a RecordIO pack (`.rec`, `.idx`, `property`) and reports what is wrong.

    Checked: the structure (magic words, record lengths, the `.idx` offsets), the labels
    (integer class ids below `num_classes`), the `property` file (its class count, and its
    image count when it has a second line), for the insightface layout the identity records
    (one per class, tiling the image keys in order, each range's images labelled with its
    class), every image decodes with Pillow to the size `property` declares (with
    `decode=True`), and the files of a checksum list.

    Args:
        path: str or path-like. The `.rec` file.
        checksum_file: str, path-like or `None`. `md5sum`/`sha1sum`/`sha256sum` output whose
            names are relative to its own folder. Defaults to `None`.
        decode: bool. Decode every image. Defaults to `True`.
        index_path: str, path-like, `"auto"` or `None`. See `keras_face.data.RecordIOReader`.
            Defaults to `"auto"`.
        num_threads: int or `None`. Decoding threads; `None` lets Python choose.
            Defaults to `None`.
        progress: bool. Show progress bars. Defaults to `True`.

    Returns:
        `keras_face.data.PackReport`; `report.ok` is `False` when a problem was found. A
        pack that cannot be opened gives a report with that one problem.

    Example:
        ```python
        report = keras_face.data.verify_recordio_pack(
            "faces_emore/train.rec", checksum_file="faces_emore/md5sums.txt"
        )
        print(report.summary())
        ```
    """
    path = os.fspath(path)
    report = PackReport(path=path)
    try:
        pack = RecordIOImagePack(path, index_path=index_path)
    except (ValueError, OSError, KeyError) as error:  # RecordIOError is a ValueError
        report.problems.append(f"the pack does not open: {error}")
    else:
        try:
            report.layout = pack.layout
            report.num_images = pack.num_images
            report.num_classes = int(pack.num_classes)
            report.image_shape = pack.image_shape
            property_path = property_path_of(path)
            report.property_path = property_path if os.path.isfile(property_path) else None
            if pack.num_images:
                report.label_range = (int(pack.labels.min()), int(pack.labels.max()))
                present = np.bincount(pack.labels, minlength=report.num_classes) > 0
                report.empty_classes = int(np.sum(~present))
            else:
                report.problems.append("the pack holds no image")
            if pack.layout == "insightface":
                _check_identity_ranges(pack, report)
            if decode and pack.num_images:
                _check_images(pack, report, num_threads, progress)
        finally:
            pack.close()
    if checksum_file is not None:
        _check_checksums(os.fspath(checksum_file), report, progress)
    return report
