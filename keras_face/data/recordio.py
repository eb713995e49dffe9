"""MXNet RecordIO (`.rec` / `.idx`) reading and writing, without MXNet.

Byte layout of a `.rec` file (dmlc-core `recordio.h`), all integers little-endian:

```
frame := uint32 magic (0xced7230a)
         uint32 lrec = cflag << 29 | length        (length < 2**29)
         length bytes of payload, zero-padded to a multiple of 4
```

`cflag` is 0 for a frame holding a whole record. When a record contains the magic word at a
4-byte-aligned offset, the writer splits it there so that a reader can always resynchronise on
the magic word: the parts are written as frames with `cflag` 1 (first), 2 (middle) and 3
(last), the magic word itself is dropped, and the reader puts it back between the parts.

The `.idx` file beside a `.rec` is text, one `key\\toffset` line per record, where `offset` is
the byte offset of the record's first frame.

Image records start with an `IRHeader` (`struct "IfQQ"`: flag, label float32, id, id2); when
`flag > 0`, `flag` float32 labels follow the header and `label` is 0. The image bytes follow.
"""

import collections
import mmap
import numbers
import os
import struct

import numpy as np

from keras_face.errors import DataError

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_MAX_RECORD_LENGTH = _LENGTH_MASK
_IR_FORMAT = "<IfQQ"
IR_HEADER_SIZE = struct.calcsize(_IR_FORMAT)  # 24 bytes
# Vectorised header reads gather this many records' bytes at once (bounds memory on
# 5M-record packs).
_GATHER_BLOCK = 1 << 18


class RecordIOError(DataError):
    """A `.rec`/`.idx` file is malformed (wrong magic word, truncated record, bad index).

    The message names the file and the byte offset of the problem.
    """


IRHeader = collections.namedtuple("IRHeader", ["flag", "label", "id", "id2"])
IRHeader.__doc__ = """Header of an image record (MXNet `IRHeader`).

Fields:
    flag: int. 0 when `label` is a single float; otherwise the number of float32 labels that
        follow the header (then `label` is that float32 array).
    label: float or `np.ndarray` of float32.
    id: int. Record id (im2rec stores the record key here).
    id2: int. Secondary id, usually 0.
"""


def pack_header(header, data=b""):
    """Serialises an `IRHeader` followed by `data` (MXNet `recordio.pack`).

    A scalar `header.label` is stored in the header with `flag` 0; an array-like label is
    stored as `len(label)` float32 values after the header with `flag = len(label)`.

    Args:
        header: `IRHeader` (or a 4-tuple `(flag, label, id, id2)`). `flag` is recomputed from
            `label`.
        data: bytes. Payload stored after the header, e.g. encoded image bytes.
            Defaults to `b""`.

    Returns:
        bytes: the record payload.

    Example:
        ```python
        record = keras_face.data.pack_header(
            keras_face.data.IRHeader(0, 7.0, 1, 0), jpeg_bytes
        )
        ```
    """
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        packed = struct.pack(_IR_FORMAT, 0, float(header.label), int(header.id), int(header.id2))
        return packed + bytes(data)
    labels = np.asarray(header.label, dtype="<f4").reshape(-1)
    if labels.size == 0:
        raise ValueError(
            "An IRHeader label must be a number or a non-empty sequence of numbers. "
            f"Received: label={header.label!r}"
        )
    packed = struct.pack(_IR_FORMAT, labels.size, 0.0, int(header.id), int(header.id2))
    return packed + labels.tobytes() + bytes(data)


def unpack_header(record):
    """Splits a record payload into its `IRHeader` and the data after it (MXNet `recordio.unpack`).

    Args:
        record: bytes-like. A record payload as returned by `RecordIOReader.read`.

    Returns:
        `(header, data)`: an `IRHeader` whose `label` is a float (flag 0) or a float32 array
        (flag > 0), and the bytes after the header and labels.

    Example:
        ```python
        header, image_bytes = keras_face.data.unpack_header(reader.read(1))
        ```
    """
    record = memoryview(record)
    if len(record) < IR_HEADER_SIZE:
        raise ValueError(
            f"A record of {len(record)} bytes is too short to hold an IRHeader "
            f"({IR_HEADER_SIZE} bytes). Received: len(record)={len(record)}"
        )
    flag, label, record_id, record_id2 = struct.unpack_from(_IR_FORMAT, record, 0)
    data_start = IR_HEADER_SIZE
    if flag > 0:
        data_start += 4 * flag
        if len(record) < data_start:
            raise ValueError(
                f"The IRHeader announces {flag} float32 labels but the record has only "
                f"{len(record) - IR_HEADER_SIZE} bytes after the header. "
                f"Received: flag={flag}"
            )
        label = np.frombuffer(record[IR_HEADER_SIZE:data_start], dtype="<f4").astype(np.float32)
    return IRHeader(flag, label, record_id, record_id2), bytes(record[data_start:])


def _align4(length):
    return (length + 3) & ~3


def _encode_frames(record):
    """Returns the frames (header + payload + padding) encoding one record, as bytes."""
    record = bytes(record)
    length = len(record)
    if length > _MAX_RECORD_LENGTH:
        raise ValueError(
            f"A RecordIO record holds at most {_MAX_RECORD_LENGTH} bytes. "
            f"Received: len(record)={length}"
        )
    # Aligned positions where the magic word occurs force a split (dmlc-core WriteRecord).
    words = np.frombuffer(record, dtype="<u4", count=length // 4)
    split_points = (np.flatnonzero(words == RECORDIO_MAGIC) * 4).tolist()
    pieces = []
    start = 0
    for position in split_points:
        cflag = 1 if start == 0 else 2
        pieces.append(struct.pack("<II", RECORDIO_MAGIC, (cflag << 29) | (position - start)))
        pieces.append(record[start:position])  # 4-aligned length: no padding needed
        start = position + 4
    cflag = 3 if split_points else 0
    pieces.append(struct.pack("<II", RECORDIO_MAGIC, (cflag << 29) | (length - start)))
    pieces.append(record[start:])
    pieces.append(b"\0" * (_align4(length - start) - (length - start)))
    return b"".join(pieces)


def default_index_path(rec_path):
    """The `.idx` beside a `.rec`: the same path with the `.idx` suffix."""
    return os.path.splitext(os.fspath(rec_path))[0] + ".idx"


class RecordIOWriter:
    """Writes a RecordIO `.rec` file and, optionally, its `.idx` index.

    Records containing the magic word at an aligned offset are split into multi-part frames
    exactly as MXNet's writer does, so the files read back with MXNet, insightface and
    `keras_face.data.RecordIOReader`.

    Args:
        path: str or path-like. The `.rec` file to create (overwritten).
        index_path: str, path-like, `"auto"` or `None`. Where to write the `key\\toffset`
            index; `"auto"` puts it beside `path` with the `.idx` suffix, `None` writes no
            index. Defaults to `"auto"`.

    Example:
        ```python
        with keras_face.data.RecordIOWriter("train.rec") as writer:
            writer.write(keras_face.data.pack_header((0, 3.0, 1, 0), jpeg_bytes), key=1)
        ```
    """

    def __init__(self, path, index_path="auto"):
        self.path = os.fspath(path)
        if index_path == "auto":
            index_path = default_index_path(self.path)
        self.index_path = None if index_path is None else os.fspath(index_path)
        self._file = open(self.path, "w+b")
        self._index_file = open(self.index_path, "w") if self.index_path else None
        self._next_key = 0

    def tell(self):
        """Returns the byte offset at which the next record will start."""
        return self._file.tell()

    def write(self, record, key=None):
        """Appends one record.

        Args:
            record: bytes-like payload (e.g. from `keras_face.data.pack_header`).
            key: int or `None`. Index key of the record; `None` uses one more than the
                previous key. Defaults to `None`.

        Returns:
            int: the byte offset of the record in the `.rec` file.
        """
        if self._file.closed:
            raise ValueError(f"The RecordIO writer for {self.path} is closed.")
        if key is None:
            key = self._next_key
        key = int(key)
        self._next_key = key + 1
        offset = self._file.tell()
        self._file.write(_encode_frames(record))
        if self._index_file is not None:
            self._index_file.write(f"{key}\t{offset}\n")
        return offset

    def overwrite(self, offset, record):
        """Rewrites a record in place; the new record must encode to as many bytes as the old.

        Used to fill in a header record whose content is only known at the end of writing.

        Args:
            offset: int. Offset returned by `write` for the record to replace.
            record: bytes-like. New payload.
        """
        frames = _encode_frames(record)
        end = self._file.tell()
        self._file.flush()
        old_size = 0
        position = offset
        while True:  # walk the old record's frames to measure it
            self._file.seek(position)
            header = self._file.read(8)
            if len(header) < 8:
                break
            magic, lrec = struct.unpack("<II", header)
            if magic != RECORDIO_MAGIC:
                break
            position += 8 + _align4(lrec & _LENGTH_MASK)
            old_size = position - offset
            if (lrec >> 29) in (0, 3):
                break
        if old_size != len(frames):
            self._file.seek(end)
            raise ValueError(
                f"Cannot overwrite the record at offset {offset} of {self.path}: the new record "
                f"encodes to {len(frames)} bytes and the old one to {old_size}. "
                f"Received: offset={offset}"
            )
        self._file.seek(offset)
        self._file.write(frames)
        self._file.seek(end)

    def close(self):
        """Flushes and closes the `.rec` and `.idx` files."""
        if not self._file.closed:
            self._file.close()
        if self._index_file is not None and not self._index_file.closed:
            self._index_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class RecordIOReader:
    """Random-access reader of a RecordIO `.rec` file through its `.idx` index.

    The file is memory-mapped. Opening validates every indexed record (magic word, frame
    flags, lengths against the file size) with vectorised NumPy, so a truncated pack, a
    wrong magic word or an index offset past the end raises `RecordIOError` naming the file
    and the offset before any training starts. Without an `.idx` file the `.rec` is scanned
    once and records get keys `0, 1, 2, ...` in file order.

    Args:
        path: str or path-like. The `.rec` file.
        index_path: str, path-like, `"auto"` or `None`. The `.idx` file; `"auto"` uses the
            file beside `path` with the `.idx` suffix when it exists; `None` always scans the
            `.rec`. Defaults to `"auto"`.

    Example:
        ```python
        with keras_face.data.RecordIOReader("faces_emore/train.rec") as reader:
            header, image_bytes = keras_face.data.unpack_header(reader.read(1))
        ```
    """

    def __init__(self, path, index_path="auto"):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"RecordIO file not found. Received: path={self.path!r}")
        if index_path == "auto":
            candidate = default_index_path(self.path)
            index_path = candidate if os.path.isfile(candidate) else None
        self.index_path = None if index_path is None else os.fspath(index_path)
        self._file = open(self.path, "rb")
        self.size = os.fstat(self._file.fileno()).st_size
        if self.size:
            self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._buffer = np.frombuffer(self._mmap, dtype=np.uint8)
        else:
            self._mmap = None
            self._buffer = np.zeros(0, dtype=np.uint8)
        if self.index_path is not None:
            self.keys, self.offsets = self._load_index(self.index_path)
        else:
            self.keys, self.offsets = self._scan()
        self._validate_indexed_records()
        self._sorted_positions = np.argsort(self.keys, kind="stable")
        self._sorted_keys = self.keys[self._sorted_positions]

    # ----------------------------------------------------------------------------- index
    def _load_index(self, index_path):
        with open(index_path, "rb") as file:
            tokens = file.read().split()
        if not tokens and self.size:
            raise RecordIOError(
                f"{index_path} is empty but {self.path} has {self.size} bytes: the .idx lists 0 "
                "records. Rebuild the index, or pass index_path=None to scan the .rec."
            )
        if len(tokens) % 2:
            raise RecordIOError(
                f"{index_path}: expected `key<TAB>offset` lines, found an odd number of fields "
                f"({len(tokens)})."
            )
        try:
            keys = np.array(tokens[0::2], dtype=np.int64)
            offsets = np.array(tokens[1::2], dtype=np.int64)
        except (ValueError, OverflowError) as error:
            raise RecordIOError(
                f"{index_path}: a key or offset is not a 64-bit integer ({error})."
            ) from None
        if len(np.unique(keys)) != len(keys):
            unique, counts = np.unique(keys, return_counts=True)
            raise RecordIOError(
                f"{index_path}: key {unique[counts > 1][0]} appears more than once."
            )
        return keys, offsets

    def _frame_headers(self, offsets):
        """Returns (magic, cflag, length) arrays for frames at `offsets` (all in bounds)."""
        words = self.gather(offsets, 8).view("<u4").reshape(-1, 2)
        return words[:, 0], words[:, 1] >> 29, words[:, 1] & _LENGTH_MASK

    def gather(self, offsets, size):
        """Returns a `(len(offsets), size)` uint8 array of the bytes at each offset."""
        offsets = np.asarray(offsets, dtype=np.int64)
        out = np.empty((len(offsets), size), dtype=np.uint8)
        columns = np.arange(size, dtype=np.int64)
        for start in range(0, len(offsets), _GATHER_BLOCK):
            block = offsets[start : start + _GATHER_BLOCK]
            out[start : start + len(block)] = self._buffer[block[:, None] + columns]
        return out

    def _validate_indexed_records(self):
        keys, offsets = self.keys, self.offsets
        bad = np.flatnonzero((offsets < 0) | (offsets + 8 > self.size))
        if len(bad):
            i = bad[0]
            raise RecordIOError(
                f"{self.index_path}: key {keys[i]} points to offset {offsets[i]}, past the end of "
                f"{self.path} ({self.size} bytes): the .rec is truncated or the .idx belongs to "
                "another file."
            )
        magic, cflags, lengths = self._frame_headers(offsets)
        bad = np.flatnonzero(magic != RECORDIO_MAGIC)
        if len(bad):
            i = bad[0]
            raise RecordIOError(
                f"{self.path}: wrong magic word 0x{int(magic[i]):08x} at offset {offsets[i]} "
                f"(key {keys[i]}); expected 0x{RECORDIO_MAGIC:08x}."
            )
        bad = np.flatnonzero(cflags >= 2)
        if len(bad):
            i = bad[0]
            raise RecordIOError(
                f"{self.path}: offset {offsets[i]} (key {keys[i]}) is the continuation of a "
                f"multi-part record (cflag={int(cflags[i])}), not the start of a record."
            )
        ends = offsets + 8 + lengths.astype(np.int64)
        bad = np.flatnonzero(ends > self.size)
        if len(bad):
            i = bad[0]
            raise RecordIOError(
                f"{self.path} is truncated: the record at offset {offsets[i]} (key {keys[i]}) "
                f"needs {int(lengths[i])} bytes of payload up to offset {ends[i]}, but the file "
                f"has {self.size} bytes."
            )
        self.cflags = cflags
        self.lengths = lengths.astype(np.int64)
        # Where each record's last frame ends (padding included): the next record starts here.
        self.record_ends = offsets + 8 + ((self.lengths + 3) & ~3)
        for i in np.flatnonzero(cflags == 1):
            _, self.lengths[i], self.record_ends[i] = self._walk_multipart(int(offsets[i]))

    def _walk_multipart(self, offset):
        """Follows the frames of a record starting at `offset`.

        Returns `(parts, total_length, next_offset)`, `parts` being `(start, length)` payload
        ranges.
        """
        parts = []
        total = 0
        position = offset
        first = True
        while True:
            if position + 8 > self.size:
                raise RecordIOError(
                    f"{self.path} is truncated: a frame header is expected at offset {position} "
                    f"(record starting at offset {offset}), but the file has {self.size} bytes."
                )
            magic, lrec = struct.unpack_from("<II", self._mmap, position)
            if magic != RECORDIO_MAGIC:
                raise RecordIOError(
                    f"{self.path}: wrong magic word 0x{magic:08x} at offset {position} "
                    f"(record starting at offset {offset}); expected 0x{RECORDIO_MAGIC:08x}."
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            expected = (0, 1) if first else (2, 3)
            if cflag not in expected:
                raise RecordIOError(
                    f"{self.path}: frame at offset {position} has cflag={cflag}, expected one of "
                    f"{expected} (record starting at offset {offset})."
                )
            if position + 8 + length > self.size:
                raise RecordIOError(
                    f"{self.path} is truncated: the frame at offset {position} (record starting "
                    f"at offset {offset}) needs {length} bytes of payload, but the file has "
                    f"{self.size} bytes."
                )
            if not first:
                total += 4  # the magic word the writer removed between parts
            parts.append((position + 8, length))
            total += length
            position += 8 + _align4(length)
            if cflag in (0, 3):
                return parts, total, position
            first = False

    def _scan(self):
        offsets = []
        position = 0
        while position < self.size:
            offsets.append(position)
            _, _, position = self._walk_multipart(position)
        offsets = np.array(offsets, dtype=np.int64)
        return np.arange(len(offsets), dtype=np.int64), offsets

    def check_index_covers_file(self):
        """Raises `RecordIOError` unless the indexed records tile the `.rec` exactly.

        Every byte of a `.rec` written by MXNet, insightface or `RecordIOWriter` belongs to
        one indexed record, so a gap (records the `.idx` does not list, e.g. a truncated
        `.idx`), an overlap (two keys pointing into one record) or bytes after the last
        record mean the `.idx` and the `.rec` do not belong together. Also raises for a
        pack without any record.

        Example:
            ```python
            with keras_face.data.RecordIOReader("train.rec") as reader:
                reader.check_index_covers_file()
            ```
        """
        where = f"{self.index_path} (the index of {self.path})" if self.index_path else self.path
        if not len(self.offsets):
            raise RecordIOError(
                f"{where} holds no records: the .rec has {self.size} bytes and the index 0 "
                "entries. Received: num_records=0"
            )
        order = np.argsort(self.offsets, kind="stable")
        starts = self.offsets[order]
        ends = self.record_ends[order]
        expected_starts = np.concatenate([[0], ends[:-1]])
        bad = np.flatnonzero(starts != expected_starts)
        if len(bad):
            i = bad[0]
            what = "is not listed in" if starts[i] > expected_starts[i] else "overlaps a record of"
            raise RecordIOError(
                f"{self.path}: bytes {int(expected_starts[i])}..{int(starts[i])} {what} the "
                f"index (key {int(self.keys[order[i]])} starts at offset {int(starts[i])}, the "
                f"previous record ends at {int(expected_starts[i])}): {where} lists "
                f"{len(self.offsets)} records that do not tile the file. The .idx is damaged or "
                "belongs to another .rec."
            )
        if ends[-1] != self.size:
            raise RecordIOError(
                f"{self.path} has {self.size} bytes but the {len(self.offsets)} records listed "
                f"by {where} end at offset {int(ends[-1])}: the .idx is truncated (records "
                "missing from it) or belongs to another .rec."
            )

    # ----------------------------------------------------------------------------- access
    def __len__(self):
        return len(self.keys)

    def __contains__(self, key):
        return self._position_of(key, missing_ok=True) is not None

    def _position_of(self, key, missing_ok=False):
        i = int(np.searchsorted(self._sorted_keys, key))
        if i < len(self._sorted_keys) and self._sorted_keys[i] == key:
            return int(self._sorted_positions[i])
        if missing_ok:
            return None
        raise KeyError(f"Key {key} is not in the index of {self.path}.")

    def positions_of(self, keys):
        """Returns the positions (in `self.keys`) of an array of keys; raises on a missing key."""
        keys = np.asarray(keys, dtype=np.int64)
        i = np.searchsorted(self._sorted_keys, keys)
        i_clipped = np.minimum(i, max(len(self._sorted_keys) - 1, 0))
        found = (i < len(self._sorted_keys)) & (self._sorted_keys[i_clipped] == keys)
        if not np.all(found):
            missing = keys[~found][0]
            raise KeyError(f"Key {missing} is not in the index of {self.path}.")
        return self._sorted_positions[i_clipped]

    def read_at_position(self, position):
        """Returns the payload of the record at `position` in the index order."""
        offset = int(self.offsets[position])
        if self.cflags[position] == 0:
            length = int(self.lengths[position])
            return self._mmap[offset + 8 : offset + 8 + length]
        parts, _, _ = self._walk_multipart(offset)
        return _MAGIC_BYTES.join(self._mmap[start : start + length] for start, length in parts)

    def read(self, key):
        """Returns the payload (bytes) of the record with index key `key`."""
        return self.read_at_position(self._position_of(key))

    def __iter__(self):
        """Yields `(key, payload)` in index order."""
        for position in range(len(self.keys)):
            yield int(self.keys[position]), self.read_at_position(position)

    def close(self):
        """Releases the memory map and the file."""
        self._buffer = np.zeros(0, dtype=np.uint8)
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # A NumPy view still references the map; it is released with the last view.
                pass
            self._mmap = None
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
