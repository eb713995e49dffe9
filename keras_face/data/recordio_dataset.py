"""Face-recognition image packs in RecordIO: reading into `tf.data`, writing, packing folders.

Two layouts are read:

- **insightface**: record 0 is a header with `flag == 2` and labels `[a, b]` and no image;
  keys `1 .. a-1` are images whose header label is the 0-based class id; keys `a .. b-1`
  are identity records whose labels `[start, end)` are the keys of that identity's images.
  (`faces_emore`, `ms1m-retinaface`, `glint360k`, ... are packed this way.)
- **plain** (`im2rec`): every record is an image; the header label is the class id.

The `property` file beside the `.rec` (text `num_classes,height,width`, optionally followed by
a second line with the image count, as insightface's python-package `RecBuilder` writes it)
is read when present.
"""

import mmap
import os

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from keras_face.data.data_stats import UndecodableImageError
from keras_face.data.data_stats import logger
from keras_face.data.image_codec import check_image_format
from keras_face.data.image_codec import check_quality
from keras_face.data.image_codec import decode_image
from keras_face.data.image_codec import describe_os_error
from keras_face.data.image_codec import encode_image
from keras_face.data.image_codec import image_format_of
from keras_face.data.image_codec import read_regular_file
from keras_face.data.image_codec import to_encoded
from keras_face.data.image_codec import try_image_size_of
from keras_face.data.image_folder import IMAGE_EXTENSIONS
from keras_face.data.image_folder import check_not_empty
from keras_face.data.image_folder import scan_image_folder
from keras_face.data.image_source import IndexedSource
from keras_face.data.pipeline import as_class_ids
from keras_face.data.pipeline import read_source
from keras_face.data.preprocessing import check_image_size
from keras_face.data.read_options import resolve_options
from keras_face.data.recordio import IR_HEADER_SIZE
from keras_face.data.recordio import IRHeader
from keras_face.data.recordio import RecordIOError
from keras_face.data.recordio import RecordIOReader
from keras_face.data.recordio import RecordIOWriter
from keras_face.data.recordio import default_index_path
from keras_face.data.recordio import pack_header
from keras_face.data.recordio import unpack_header
from keras_face.errors import DataError

LAYOUTS = ("auto", "insightface", "plain")


def property_path_of(rec_path):
    """The `property` file of a pack: beside its `.rec`, whatever the `.rec` is called.

    Args:
        rec_path: str or path-like. The `.rec` file.

    Returns:
        str, the absolute path of the pack's `property` file (which may not exist).

    Example:
        ```python
        keras_face.data.recordio_dataset.property_path_of("faces_emore/train.rec")
        ```
    """
    return os.path.join(os.path.dirname(os.path.abspath(rec_path)), "property")


def _read_property(rec_path):
    """Returns `(path, num_classes, (height, width), image_count or None)`, or `None`.

    Two forms exist: one line `num_classes,height,width` (insightface's MXNet-era tools
    and keras_face), or that line followed by a second holding the image count (the
    `RecBuilder` of insightface's python package writes `"N,112,112\nM\n"`).
    """
    path = property_path_of(rec_path)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as file:
        raw = file.read()
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise RecordIOError(
            f"{path} is not text: expected `num_classes,height,width`. Received: {raw[:40]!r}"
        ) from None
    expected = "`num_classes,height,width`, optionally followed by a line with the image count"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        values = [int(value) for value in lines[0].split(",")] if lines else []
        image_count = int(lines[1]) if len(lines) == 2 else None
    except ValueError:
        raise RecordIOError(f"{path}: expected {expected}. Received: {text!r}") from None
    if (
        len(lines) not in (1, 2)
        or len(values) != 3
        or min(values) <= 0
        or (image_count is not None and image_count < 0)
    ):
        raise RecordIOError(f"{path}: expected {expected}. Received: {text!r}")
    return path, values[0], (values[1], values[2]), image_count


class RecordIOImagePack:
    """Index of the images of a RecordIO pack: keys, labels and where each image's bytes are.

    Opening reads every image header at once from the memory-mapped file (vectorised), checks
    that every label is an integer class id (a float label such as 3.5 raises, naming the
    key) and detects the layout. The header record, the `.idx` and the `property` file are
    cross-checked before anything is allocated from their numbers: the indexed records must
    tile the `.rec`; an insightface header `[a, b]` must describe exactly the `b` records the
    `.idx` lists (images at keys `1..a-1`, identity records at `a..b-1`); its identity count
    must equal the `property` file's class count and exceed every label. Any disagreement
    (and an empty pack, or a damaged header: NaN, infinite, fractional or reversed labels, or
    identity records behind a record 0 that is no header) raises
    `keras_face.data.RecordIOError` naming the file and both numbers: a pack that does not
    add up is never read as fewer images or more classes than it holds.

    Args:
        path: str or path-like. The `.rec` file.
        index_path: str, path-like, `"auto"` or `None`. See `keras_face.data.RecordIOReader`.
            Defaults to `"auto"`.
        layout: str. `"auto"` (insightface when record 0 is a header record: flag 2, integer
            labels `[a, b]` with `1 <= a <= b`, no image; else plain),
            `"insightface"` or `"plain"`. Defaults to `"auto"`.

    Example:
        ```python
        pack = keras_face.data.RecordIOImagePack("faces_emore/train.rec")
        print(pack.layout, pack.num_images, pack.num_classes)
        ```
    """

    def __init__(self, path, index_path="auto", layout="auto"):
        if layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
        self.path = os.fspath(path)
        self.reader = RecordIOReader(self.path, index_path=index_path)
        try:
            self.reader.check_index_covers_file()
            self.layout, image_positions, self.header_labels = self._detect_layout(layout)
            self._index_images(image_positions, layout)
            self._set_num_classes()
        except BaseException:
            self.reader.close()
            raise
        self._identity_ranges = None
        # The pack's own read-only map of the file (the page cache is shared with the
        # reader's): slicing it is the fastest way to the image bytes (under 1 us an image).
        self._file = open(self.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self._data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    # ------------------------------------------------------------------------ layout
    def _header_record(self):
        """Returns `(a, b)` when key 0 is an insightface header record, else `None`.

        A header record has flag 2 and no image. One whose labels are not integer keys
        `1 <= a <= b` (NaN, infinite, fractional, reversed) is damaged: it raises naming
        both numbers rather than reading the pack in another layout.
        """
        if 0 not in self.reader:
            return None
        position = int(self.reader.positions_of([0])[0])
        try:
            header, data = unpack_header(self.reader.read_at_position(position))
        except ValueError:
            return None
        # An im2rec image with two labels also has flag 2: a header record holds no image.
        if header.flag != 2 or (len(data) and image_format_of(data) is not None):
            return None
        first, end = (float(value) for value in header.label)
        if not (np.isfinite(first) and np.isfinite(end)) or first != int(first) or end != int(end):
            raise RecordIOError(
                f"{self.path}: the header record (key 0) holds labels [{first!r}, {end!r}], "
                "which are not the integer keys [first identity record, end] of an insightface "
                f"pack: the header is damaged. Received: header labels=[{first!r}, {end!r}]"
            )
        if not 1 <= first <= end:
            raise RecordIOError(
                f"{self.path}: the header record (key 0) holds labels [{int(first)}, {int(end)}]"
                "; an insightface header needs 1 <= first identity key <= end: the header is "
                f"damaged. Received: header labels=[{int(first)}, {int(end)}]"
            )
        return int(first), int(end)

    def _detect_layout(self, layout):
        header = self._header_record() if layout != "plain" else None
        if layout == "insightface" and header is None:
            raise RecordIOError(
                f"{self.path}: layout='insightface' needs record 0 to be a header with flag 2, "
                "labels [a, b] (1 <= a <= b) and no image; it is not. Use layout='plain'."
            )
        if layout == "plain" or header is None:
            return "plain", np.arange(len(self.reader), dtype=np.int64), None
        self._check_header_against_index(*header)
        first, _ = header
        positions = self.reader.positions_of(np.arange(1, first, dtype=np.int64))
        return "insightface", positions, header

    def _check_header_against_index(self, first, end):
        """Raises unless header `[first, end]` describes the records the `.idx` lists.

        An insightface pack holds exactly keys `0 .. end - 1`: the header, the images
        `1 .. first - 1` and the identity records `first .. end - 1`. Checked before
        anything is allocated from the header's numbers (a damaged header may claim 2e9).
        """
        reader = self.reader
        count = len(reader)
        index = reader.index_path or f"{self.path} (scanned, no .idx)"
        low, high = int(reader.keys.min()), int(reader.keys.max())
        if count != end or low != 0 or high != end - 1:
            raise RecordIOError(
                f"{self.path}: the header record (key 0) says the pack holds {end} records "
                f"({first - 1} images at keys 1..{first - 1}, {end - first} identity records at "
                f"keys {first}..{end - 1}), but {index} lists {count} records (keys "
                f"{low}..{high}). The header or the .idx is damaged. "
                f"Received: header labels=[{first}, {end}], num_records={count}"
            )
        boundary = []
        if first > 1:
            boundary.append((first - 1, False))  # the last image
        if first < end:
            boundary.append((first, True))  # the first identity record
        for key, identity in boundary:
            position = int(reader.positions_of([key])[0])
            try:
                header, data = unpack_header(reader.read_at_position(position))
            except ValueError:
                header, data = None, b""
            is_identity = header is not None and header.flag == 2 and not len(data)
            if is_identity != identity:
                expected = "an identity record" if identity else "an image"
                raise RecordIOError(
                    f"{self.path}: the header record (key 0) says key {key} is {expected} "
                    f"(images at keys 1..{first - 1}, identity records at keys "
                    f"{first}..{end - 1}), but it is not. The header is damaged. "
                    f"Received: header labels=[{first}, {end}]"
                )

    # ------------------------------------------------------------------------ images
    def _index_images(self, positions, layout):
        reader = self.reader
        self.record_positions = positions
        self.keys = reader.keys[positions]
        self.record_offsets = reader.offsets[positions]
        count = len(positions)
        lengths = reader.lengths[positions]
        single = reader.cflags[positions] == 0
        labels = np.zeros(count, dtype=np.float64)
        record_flags = np.full(count, -1, dtype=np.int64)  # -1: multi-part, read below
        data_offsets = np.full(count, -1, dtype=np.int64)
        data_lengths = np.zeros(count, dtype=np.int64)

        short = np.flatnonzero(single & (lengths < IR_HEADER_SIZE))
        if len(short):
            i = short[0]
            raise RecordIOError(
                f"{self.path}: the record at offset {self.record_offsets[i]} (key {self.keys[i]}) "
                f"has {lengths[i]} bytes, too few for an IRHeader ({IR_HEADER_SIZE} bytes)."
            )
        index = np.flatnonzero(single)
        headers = reader.gather(self.record_offsets[index] + 8, IR_HEADER_SIZE)
        flags = np.ascontiguousarray(headers[:, 0:4]).view("<u4").ravel().astype(np.int64)
        labels[index] = np.ascontiguousarray(headers[:, 4:8]).view("<f4").ravel()
        record_flags[index] = flags
        label_bytes = 4 * flags
        too_short = np.flatnonzero(lengths[index] < IR_HEADER_SIZE + label_bytes)
        if len(too_short):
            i = index[too_short[0]]
            raise RecordIOError(
                f"{self.path}: the record at offset {self.record_offsets[i]} (key {self.keys[i]}) "
                f"announces {flags[too_short[0]]} labels but has only {lengths[i]} bytes."
            )
        with_array = np.flatnonzero(flags > 0)
        if len(with_array):
            # insightface convention: the first label of a label array is the class id.
            first = reader.gather(self.record_offsets[index[with_array]] + 8 + IR_HEADER_SIZE, 4)
            labels[index[with_array]] = first.view("<f4").ravel()
        data_offsets[index] = self.record_offsets[index] + 8 + IR_HEADER_SIZE + label_bytes
        data_lengths[index] = lengths[index] - IR_HEADER_SIZE - label_bytes

        for i in np.flatnonzero(~single):  # multi-part records: rare, read in full
            try:
                header, data = unpack_header(reader.read_at_position(positions[i]))
            except ValueError as error:
                raise RecordIOError(
                    f"{self.path}: the record at offset {self.record_offsets[i]} (key "
                    f"{self.keys[i]}) is not an image record: {error}"
                ) from None
            labels[i] = header.label if header.flag == 0 else header.label[0]
            record_flags[i] = header.flag
            data_lengths[i] = len(data)

        self.record_flags = record_flags
        self.data_lengths = data_lengths
        if layout == "auto" and self.layout == "plain":
            self._check_no_identity_records()
        bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | (labels >= 2**31)
        if np.any(bad):
            i = np.flatnonzero(bad)[0]
            raise RecordIOError(
                f"{self.path}: the image record at offset {self.record_offsets[i]} (key "
                f"{self.keys[i]}) has label {float(labels[i])!r}, which is not an integer class "
                "id. Nothing was read."
            )
        self.labels = labels.astype(np.int32)
        self.data_offsets = data_offsets
        self.data_lengths = data_lengths

    def _check_no_identity_records(self):
        """Raises when a pack read as plain holds insightface identity records.

        Identity records (flag 2, labels `[start, end)`, no image) exist only after an
        insightface header; finding them in a pack whose record 0 is not a valid header
        means the header record is damaged, and reading on would count every identity
        record as an image.
        """
        identity_like = np.flatnonzero((self.record_flags == 2) & (self.data_lengths == 0))
        if not len(identity_like):
            return
        position = int(self.record_positions[0]) if len(self.record_positions) else 0
        try:
            header, data = unpack_header(self.reader.read_at_position(position))
            found = f"flag={header.flag}, label={header.label!r}, {len(data)} bytes of data"
        except ValueError as error:
            found = str(error)
        raise RecordIOError(
            f"{self.path}: {len(identity_like)} records (keys "
            f"{self.keys[identity_like[:5]].tolist()}...) are insightface identity records "
            "(flag 2, no image) but record 0 is not a valid insightface header: the header "
            "record is damaged. Pass layout='plain' to read every record as an image anyway. "
            f"Received: record 0 with {found}"
        )

    def _set_num_classes(self):
        max_label = int(self.labels.max()) if len(self.labels) else -1
        found = _read_property(self.path)
        if found is not None:
            property_path, num_classes, self.image_shape, image_count = found
            if image_count is not None and image_count != self.num_images:
                raise RecordIOError(
                    f"{self.path}: {property_path} declares {image_count} images but the pack "
                    f"holds {self.num_images} image records."
                )
            if max_label >= num_classes:
                raise RecordIOError(
                    f"{self.path}: labels go up to {max_label} but {property_path} declares "
                    f"{num_classes} classes. Received: num_classes={num_classes}"
                )
            declared = self._declared_identities()
            if declared is not None and declared != num_classes:
                raise RecordIOError(
                    f"{self.path}: the header record declares {declared} identity records but "
                    f"{property_path} declares {num_classes} classes. "
                    f"Received: header labels={list(self.header_labels)}, "
                    f"num_classes={num_classes}"
                )
            self.num_classes = num_classes
            return
        self.image_shape = None
        declared = self._declared_identities()
        if declared is not None:
            if declared <= max_label:
                raise RecordIOError(
                    f"{self.path}: labels go up to {max_label} but the header record declares "
                    f"{declared} identity records. Received: header labels="
                    f"{list(self.header_labels)}"
                )
            self.num_classes = declared
            return
        self.num_classes = max_label + 1

    def _declared_identities(self):
        if self.header_labels is None:
            return None
        return self.header_labels[1] - self.header_labels[0]

    @property
    def num_images(self):
        return len(self.labels)

    def __len__(self):
        return len(self.labels)

    @property
    def identity_ranges(self):
        """`(num_identities, 2)` int64 array of `[start, end)` image keys per identity record.

        Available for the insightface layout; `None` for plain packs.
        """
        if self.header_labels is None:
            return None
        if self._identity_ranges is None:
            first, end = self.header_labels
            ranges = np.zeros((end - first, 2), dtype=np.int64)
            for row, key in enumerate(range(first, end)):
                header, _ = unpack_header(self.reader.read(key))
                if header.flag < 2:
                    raise RecordIOError(
                        f"{self.path}: identity record {key} has no [start, end) label pair."
                    )
                ranges[row] = [int(header.label[0]), int(header.label[1])]
            self._identity_ranges = ranges
        return self._identity_ranges

    def read_image(self, index):
        """Returns the encoded bytes of the `index`-th image (0-based, in index order)."""
        offset = int(self.data_offsets[index])
        if offset >= 0:
            return self._data[offset : offset + int(self.data_lengths[index])]
        return unpack_header(self.reader.read_at_position(self.record_positions[index]))[1]

    def read_images(self, indices):
        """Returns a list of encoded bytes for an array of image indices."""
        offsets = self.data_offsets[indices]
        if np.all(offsets >= 0):
            ends = offsets + self.data_lengths[indices]
            data = self._data
            return [data[start:end] for start, end in zip(offsets.tolist(), ends.tolist())]
        return [self.read_image(index) for index in indices]

    def image_key(self, index):
        return int(self.keys[index])

    def close(self):
        """Releases the memory maps and files of the pack."""
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._data = b""
        self._file.close()
        self.reader.close()


class _RecordIOSource(IndexedSource):
    def __init__(self, pack):
        super().__init__()
        self.pack = pack
        self.labels = pack.labels
        self.num_items = pack.num_images
        self.num_classes = pack.num_classes
        self.layout = pack.layout
        self.description = pack.path

    def read_payloads(self, items):
        return self.pack.read_images(items)

    def item_key(self, item):
        return self.pack.image_key(item)

    def describe_key(self, key):
        position = int(self.pack.reader.positions_of([key])[0])
        return f"{key} (record offset {int(self.pack.reader.offsets[position])})"


def read_recordio(path, options=None, *, layout="auto", index_path="auto", **option_overrides):
    """Reads a RecordIO face pack (`.rec` + `.idx`) through the shared reader pipeline.

    The `.rec` is memory-mapped and indexed once (all headers validated, labels checked);
    each pass then reads the JPEG bytes of a shuffled order of image indices from Python in
    chunks and decodes them in parallel inside `tf.data`. Images are uint8 `(H, W, 3)`,
    labels int32 class ids (insightface layout: the 0-based class id of the header; plain
    `im2rec` layout: the header label). Shuffling permutes the whole pack by index every
    pass; sharding gives each pipeline every `num_shards`-th image.

    An image that cannot be decoded is skipped, never replaced, so no label shifts; it is
    counted with its key in `stats` (`keras_face.data.DataStats`) and reported on the
    `"keras_face.data"` logger at the end of the pass. With `strict=True` the pipeline raises
    instead, naming the key. Structural problems (truncated `.rec`, wrong magic word, `.idx`
    offset past the end) raise `keras_face.data.RecordIOError` naming the file and offset
    when this function is called, and so do a header record, `.idx` and `property` file that
    disagree (see `keras_face.data.RecordIOImagePack`) and a pack without images. Images of
    another size than `image_size` (when batching without one: the first image's) are
    resized, or skipped and counted, as `keras_face.data.ReadOptions.size_mismatch` says.

    Args:
        path: str or path-like. The `.rec` file; the `.idx` beside it is used.
        options: `keras_face.data.ReadOptions` or `None`. Batching, order, sharding and
            image steps (shared by every reader and documented there). Defaults to `None`.
        layout: str. `"auto"`, `"insightface"` or `"plain"`; see
            `keras_face.data.RecordIOImagePack`. Defaults to `"auto"`.
        index_path: str, path-like, `"auto"` or `None`. The `.idx` file; `"auto"` uses the
            one beside `path`, `None` scans the `.rec`. Defaults to `"auto"`.
        **option_overrides: any field of `keras_face.data.ReadOptions` (`batch_size`,
            `shuffle`, `seed`, `flip`, ...), replacing the one of `options`.

    Returns:
        `keras_face.data.FaceDataset` with `num_classes` (from the `property` file, the
        header record or the labels), `num_images` (in this shard) and `layout`.

    Example:
        ```python
        faces = keras_face.data.read_recordio(
            "faces_emore/train.rec", batch_size=128, flip=True, preprocessing="arcface"
        )
        model.fit(faces.dataset, epochs=20)
        print(faces.num_classes, faces.stats.skipped)
        ```
    """
    options = resolve_options(options, option_overrides)
    pack = RecordIOImagePack(path, index_path=index_path, layout=layout)
    if pack.num_images == 0:
        pack.close()
        raise RecordIOError(
            f"{pack.path}: the pack holds no image record (layout {pack.layout!r}, "
            f"{len(pack.reader)} records). Received: num_images=0"
        )
    return read_source(_RecordIOSource(pack), options)


def _write_property(rec_path, num_classes, image_shape):
    path = property_path_of(rec_path)
    with open(path, "w") as file:
        file.write(f"{num_classes},{image_shape[0]},{image_shape[1]}")
    return path


def write_recordio(
    path,
    samples,
    layout="insightface",
    image_format="jpeg",
    quality=95,
    num_classes=None,
    write_property=True,
    progress=True,
    total=None,
):
    """Writes `(image, label)` samples into a RecordIO pack (`.rec`, `.idx`, `property`).

    Args:
        path: str or path-like. The `.rec` file to create; the `.idx` goes beside it and
            `property` (`num_classes,height,width`, from the first image) in its directory.
        samples: iterable of `(image, label)`. `image` is an (H, W, 3) uint8 array (encoded
            with `image_format`) or encoded image bytes (stored unchanged); `label` an
            integer class id.
        layout: str. `"insightface"` (header record 0, images at keys 1..N, one identity
            record per class; the images of each class must be contiguous in `samples`) or
            `"plain"` (images at keys 0..N-1, like `im2rec`). Defaults to `"insightface"`.
        image_format: str. `"jpeg"` or `"png"`, for arrays. Defaults to `"jpeg"`.
        quality: int. JPEG quality. Defaults to `95`.
        num_classes: int or `None`. Number of classes; `None` uses the largest label + 1.
            Defaults to `None`.
        write_property: bool. Write the `property` file. Defaults to `True`.
        progress: bool. Show a progress bar. Defaults to `True`.
        total: int or `None`. Number of samples, for the progress bar when `samples` has
            no `len`. Defaults to `None`.

    Returns:
        dict with `path`, `index_path`, `property_path`, `num_images`, `num_classes`,
        `image_shape` and `layout`.

    Example:
        ```python
        keras_face.data.write_recordio("train.rec", zip(images, labels))
        dataset = keras_face.data.read_recordio("train.rec")
        ```
    """
    if layout not in ("insightface", "plain"):
        raise ValueError(f"`layout` must be 'insightface' or 'plain'. Received: layout={layout!r}")
    image_format = check_image_format(image_format)
    quality = check_quality(quality)
    if total is None and hasattr(samples, "__len__"):
        total = len(samples)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    insightface = layout == "insightface"
    ranges = {}  # label -> [first key, last key + 1]
    finished = set()
    current = None
    image_shape = None
    count = 0
    max_label = -1
    with RecordIOWriter(path) as writer:
        if insightface:
            header_offset = writer.write(pack_header(IRHeader(0, [1.0, 1.0], 0, 0)), key=0)
        for image, label in tqdm(
            samples, total=total, desc="Writing RecordIO", disable=not progress
        ):
            label = int(as_class_ids([label], "label")[0])
            max_label = max(max_label, label)
            data = to_encoded(image, image_format=image_format, quality=quality)
            if image_shape is None:
                image_shape = try_image_size_of(data)
            key = count + 1 if insightface else count
            if insightface and label != current:
                if label in finished:
                    raise ValueError(
                        f"Label {label} appears again at sample {count} after other labels. The "
                        "insightface layout needs the images of each identity to be contiguous: "
                        "sort the samples by label or use layout='plain'."
                    )
                if current is not None:
                    finished.add(current)
                current = label
                ranges[label] = [key, key]
            if insightface:
                ranges[label][1] = key + 1
            writer.write(pack_header(IRHeader(0, float(label), key, 0), data), key=key)
            count += 1
        if num_classes is None:
            num_classes = max_label + 1
        elif num_classes <= max_label:
            raise ValueError(
                f"`num_classes` must exceed the largest label ({max_label}). "
                f"Received: num_classes={num_classes}"
            )
        if insightface:
            first_identity_key = count + 1
            next_start = 1
            for label in range(num_classes):
                start, end = ranges.get(label, [next_start, next_start])
                next_start = end
                writer.write(
                    pack_header(
                        IRHeader(0, [float(start), float(end)], first_identity_key + label, 0)
                    ),
                    key=first_identity_key + label,
                )
            writer.overwrite(
                header_offset,
                pack_header(
                    IRHeader(
                        0,
                        [float(first_identity_key), float(first_identity_key + num_classes)],
                        0,
                        0,
                    )
                ),
            )
        index_path = writer.index_path
    property_path = None
    if write_property and image_shape is not None:
        property_path = _write_property(path, num_classes, image_shape)
    return {
        "path": path,
        "index_path": index_path,
        "property_path": property_path,
        "num_images": count,
        "num_classes": int(num_classes),
        "image_shape": image_shape,
        "layout": layout,
    }


def pack_image_folder(
    directory,
    output_path,
    layout="insightface",
    image_size=None,
    quality=95,
    verify=True,
    strict=False,
    extensions=IMAGE_EXTENSIONS,
    progress=True,
):
    """Packs a folder-per-identity tree into a RecordIO pack (`.rec`, `.idx`, `property`).

    Identities are numbered in sorted directory-name order (as `list_image_folder`). JPEG
    and PNG files are stored byte for byte (so decoding the pack gives exactly the pixels of
    decoding the files); other formats are re-encoded losslessly as PNG; with `image_size`
    images of another size are resized and re-encoded as JPEG at `quality`. With
    `verify=True` each file is fully decoded first: an undecodable file is skipped and counted
    (listed in the returned summary and logged at the end), or raises naming the file when
    `strict=True`. Entries that cannot be read (see `keras_face.data.scan_image_folder`: a
    named pipe or other special file, which is never opened for reading, a dangling link, a
    link loop, a file or directory without permission) are skipped and counted the same way.
    A folder without identities or images, or whose images all fail, raises
    `keras_face.errors.DataError` naming it, and no `.rec`/`.idx` is left behind (nor after
    any other error).

    Args:
        directory: str or path-like. Root of the tree.
        output_path: str or path-like. The `.rec` file to create.
        layout: str. `"insightface"` or `"plain"`. Defaults to `"insightface"`.
        image_size: int, `(height, width)` or `None`. Resize to this size. Defaults to `None`.
        quality: int. JPEG quality for re-encoded images. Defaults to `95`.
        verify: bool. Decode every file before packing it. Defaults to `True`.
        strict: bool. Raise (`keras_face.errors.DataError`) on an undecodable or
            unreadable file instead of skipping it. Defaults to `False`.
        extensions: tuple of str. Image file suffixes. Defaults to common image suffixes.
        progress: bool. Show a progress bar. Defaults to `True`.

    Returns:
        dict: the summary of `write_recordio` plus `class_names`, `skipped` (paths of
        skipped files) and `num_skipped`.

    Example:
        ```python
        summary = keras_face.data.pack_image_folder("aligned_faces/", "packs/train.rec")
        dataset = keras_face.data.read_recordio("packs/train.rec", batch_size=128)
        ```
    """
    image_size = check_image_size(image_size)
    quality = check_quality(quality)
    directory = os.fspath(directory)
    output_path = os.fspath(output_path)
    scan = scan_image_folder(directory, extensions=extensions)
    check_not_empty(directory, scan, extensions)
    if strict and scan.unreadable:
        path, _, reason = scan.unreadable[0]
        raise DataError(
            f"Cannot read {path!r} ({reason}) in the image folder {directory}. Pass "
            "strict=False to skip unreadable files."
        )
    paths, labels, class_names = scan.paths, scan.labels, scan.class_names
    skipped = [path for path, _, _ in scan.unreadable]

    def samples():
        for path, label in tqdm(
            list(zip(paths, labels)), desc="Packing images", disable=not progress
        ):
            try:
                data = read_regular_file(path)
            except OSError as error:
                if strict:
                    raise DataError(
                        f"Cannot read image file {path!r} ({describe_os_error(error)}). Pass "
                        "strict=False to skip unreadable files."
                    ) from None
                skipped.append(path)
                continue
            image_format = image_format_of(data)
            needs_pixels = verify or image_size is not None or image_format not in ("jpeg", "png")
            if needs_pixels:
                try:
                    pixels = decode_image(data)
                except Exception as error:  # Pillow raises many types for bad files
                    if strict:
                        raise UndecodableImageError(
                            f"Cannot decode image file {path!r} ({error}). Pass strict=False to "
                            "skip undecodable files."
                        ) from None
                    skipped.append(path)
                    continue
                if image_size is not None and pixels.shape[:2] != image_size:
                    data = _resize_and_encode(pixels, image_size, quality)
                elif image_format not in ("jpeg", "png"):
                    data = encode_image(pixels, image_format="png")
            yield data, int(label)

    written = (output_path, default_index_path(output_path), property_path_of(output_path))
    existed = [os.path.exists(path) for path in written]
    try:
        summary = write_recordio(
            output_path,
            samples(),
            layout=layout,
            quality=quality,
            num_classes=len(class_names),
            progress=False,
        )
        if summary["num_images"] == 0:
            raise DataError(
                f"{directory}: none of the {len(skipped)} image files could be read or "
                f"decoded, so nothing was packed (e.g. {skipped[:3]}). Received: 0 images"
            )
    except BaseException:
        # No half-written or empty pack is left behind for a later reader to trust.
        for path, was_there in zip(written, existed):
            if not was_there and os.path.exists(path):
                os.remove(path)
        raise
    if skipped:
        logger.warning(
            "pack_image_folder: skipped %d undecodable files under %s, e.g. %s",
            len(skipped),
            directory,
            skipped[:5],
        )
    summary.update(class_names=class_names, skipped=skipped, num_skipped=len(skipped))
    return summary


def _resize_and_encode(pixels, image_size, quality):
    height, width = image_size
    resized = Image.fromarray(pixels).resize((width, height), Image.BILINEAR)
    return encode_image(np.asarray(resized), image_format="jpeg", quality=quality)
