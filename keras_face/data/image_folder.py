"""Image folders with one sub-directory per identity: listing, reading and writing."""

import os
import stat
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from keras_face.data.data_stats import UndecodableImageError
from keras_face.data.data_stats import logger
from keras_face.data.image_codec import check_image_format
from keras_face.data.image_codec import describe_os_error
from keras_face.data.image_codec import image_format_of
from keras_face.data.image_codec import read_regular_file
from keras_face.data.image_codec import to_encoded
from keras_face.data.image_source import IndexedSource
from keras_face.data.pipeline import as_class_ids
from keras_face.data.pipeline import read_source
from keras_face.data.read_options import resolve_options
from keras_face.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_EXTENSION_OF_FORMAT = {
    "jpeg": ".jpg",
    "png": ".png",
    "gif": ".gif",
    "bmp": ".bmp",
    "webp": ".webp",
}


class ImageFolderScan(NamedTuple):
    """What `scan_image_folder` found: the images and the entries that cannot be read.

    Attributes:
        paths: list of str. Image files (regular files, or links to them), sorted per
            identity.
        labels: int32 array. The identity of each path.
        class_names: list of str. The sorted identity names.
        unreadable: list of `(path, label, reason)`. Entries with an image suffix that are
            not readable regular files (a named pipe, a dangling symbolic link, a link loop,
            a file without read permission) and directories that cannot be listed or were
            not followed; the readers skip and count them, `strict` mode raises.
    """

    paths: list
    labels: np.ndarray
    class_names: list
    unreadable: list


def _entry_problem(entry, follow_links):
    """`(kind, reason)` of a directory entry: kind is "dir", "file" or None (a problem)."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return "dir", None
        if entry.is_symlink():
            target = os.stat(entry.path)  # follows the link: raises if dangling or a loop
            if stat.S_ISDIR(target.st_mode):
                if follow_links:
                    return "dir", None
                return None, "a symbolic link to a directory (not followed: follow_links=False)"
            mode = target.st_mode
        else:
            mode = entry.stat(follow_symlinks=False).st_mode
    except OSError as error:
        return None, describe_os_error(error)
    if not stat.S_ISREG(mode):
        return None, "not a regular file"
    return "file", None


def _scan_identity(top, label, extensions, follow_links, unreadable):
    """Image files under `top` (recursively, sorted); problems are appended to `unreadable`."""
    found = []
    visited = set()
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            identity = os.stat(directory)
            with os.scandir(directory) as iterator:
                entries = sorted(iterator, key=lambda entry: entry.name)
        except OSError as error:
            unreadable.append((directory, label, f"directory {describe_os_error(error)}"))
            continue
        inode = (identity.st_dev, identity.st_ino)
        if inode in visited:  # reached again through a followed link
            unreadable.append((directory, label, "a symbolic link loop"))
            continue
        visited.add(inode)
        subdirectories = []
        for entry in entries:
            is_image = entry.name.lower().endswith(extensions)
            kind, reason = _entry_problem(entry, follow_links)
            if kind == "dir":
                subdirectories.append(entry.path)
            elif kind == "file" and is_image:
                found.append(entry.path)
            elif kind is None and (is_image or "directory" in reason):
                unreadable.append((entry.path, label, reason))
        pending.extend(reversed(subdirectories))
    found.sort()
    return found


def scan_image_folder(directory, extensions=IMAGE_EXTENSIONS, follow_links=False):
    """Lists a folder-per-identity tree, separating readable images from problem entries.

    Like `list_image_folder`, and never opens a file: an entry with an image suffix that
    is not a regular file (a named pipe called `pipe.jpg`, a socket, a dangling symbolic
    link, a link loop) and a sub-directory that cannot be listed or is a link not
    followed are returned in `unreadable` with the reason, instead of hanging, crashing
    or silently disappearing. A directory reached twice through followed links is
    reported as a loop.

    Args:
        directory: str or path-like. Root of the tree.
        extensions: tuple of str. File suffixes (case-insensitive) counted as images.
            Defaults to `(".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")`.
        follow_links: bool. Whether to follow symbolic links to directories.
            Defaults to `False`.

    Returns:
        `keras_face.data.ImageFolderScan`: `paths`, `labels`, `class_names`, `unreadable`.

    Example:
        ```python
        scan = keras_face.data.scan_image_folder("faces/")
        for path, label, reason in scan.unreadable:
            print(path, reason)
        ```
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Image folder not found. Received: directory={directory!r}")
    extensions = tuple(extension.lower() for extension in extensions)
    try:
        names = os.listdir(directory)
    except OSError as error:
        raise DataError(
            f"{directory}: the image folder cannot be listed ({describe_os_error(error)}). "
            f"Received: directory={directory!r}"
        ) from None
    class_names = sorted(name for name in names if os.path.isdir(os.path.join(directory, name)))
    paths, labels, unreadable = [], [], []
    for label, name in enumerate(class_names):
        found = _scan_identity(
            os.path.join(directory, name), label, extensions, follow_links, unreadable
        )
        paths.extend(found)
        labels.extend([label] * len(found))
    return ImageFolderScan(paths, np.asarray(labels, dtype=np.int32), class_names, unreadable)


def list_image_folder(directory, extensions=IMAGE_EXTENSIONS, follow_links=False):
    """Lists the images of a folder-per-identity tree.

    Every sub-directory of `directory` is one identity; its label is the index of its name in
    the sorted list of sub-directory names (empty identities keep their label). Images are
    searched recursively inside each identity directory and sorted by path. Entries that
    cannot be read (see `keras_face.data.scan_image_folder`) are left out with a warning on
    the `"keras_face.data"` logger naming them.

    Args:
        directory: str or path-like. Root of the tree.
        extensions: tuple of str. File suffixes (case-insensitive) counted as images.
            Defaults to `(".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")`.
        follow_links: bool. Whether to follow symbolic links to directories.
            Defaults to `False`.

    Returns:
        `(paths, labels, class_names)`: list of file paths, int32 array of labels and the
        sorted list of identity names.

    Example:
        ```python
        paths, labels, names = keras_face.data.list_image_folder("faces/")
        ```
    """
    scan = scan_image_folder(directory, extensions=extensions, follow_links=follow_links)
    _warn_unreadable(directory, scan.unreadable)
    return scan.paths, scan.labels, scan.class_names


def _warn_unreadable(directory, unreadable):
    if unreadable:
        logger.warning(
            "%s: %d entries cannot be read and are skipped: %s",
            os.fspath(directory),
            len(unreadable),
            "; ".join(f"{path} ({reason})" for path, _, reason in unreadable[:5]),
        )


class _ImageFolderSource(IndexedSource):
    def __init__(self, directory, scan):
        super().__init__()
        self.directory = directory
        # Unreadable entries stay items (sent empty): they are skipped and counted with
        # their path and reason, never dropped without a trace.
        self.paths = list(scan.paths) + [path for path, _, _ in scan.unreadable]
        self.labels = np.concatenate(
            [scan.labels, np.asarray([label for _, label, _ in scan.unreadable], np.int32)]
        ).astype(np.int32)
        for item, (_, _, reason) in enumerate(scan.unreadable, start=len(scan.paths)):
            self.note_problem(item, reason)
        self.class_names = scan.class_names
        self.num_classes = len(scan.class_names)
        self.num_items = len(self.paths)
        self.description = directory

    def read_payloads(self, items):
        payloads = []
        problems = self._problems()
        for item in items:
            item = int(item)
            if self.item_key(item) in problems:
                payloads.append(b"")
                continue
            try:
                payloads.append(read_regular_file(self.paths[item]))
            except OSError as error:
                self.note_problem(item, describe_os_error(error))
                payloads.append(b"")
        return payloads

    def item_key(self, item):
        return os.path.relpath(self.paths[item], self.directory)

    def describe_key(self, key):
        return os.path.join(self.directory, key)


def read_image_folder(directory, options=None, *, extensions=IMAGE_EXTENSIONS, **option_overrides):
    """Reads a folder-per-identity tree through the shared reader pipeline.

    Labels follow `keras_face.data.list_image_folder` (sorted identity names). Shuffling
    permutes the files every pass; sharding gives each pipeline every `num_shards`-th file.
    An image that cannot be used is skipped and counted with its path relative to
    `directory` as key and the reason (`stats.skip_reasons`), or raises in strict mode
    naming the file, as in `keras_face.data.read_recordio`: an undecodable file, an
    unreadable one (permission denied, a dangling symbolic link, a link loop), a special
    file with an image suffix (a named pipe is never opened for reading, so it never
    blocks), a sub-directory that cannot be listed, and an image of another size when
    `size_mismatch="skip"` (by default it is resized to `image_size`, see
    `keras_face.data.ReadOptions`).

    Args:
        directory: str or path-like. Root of the tree.
        options: `keras_face.data.ReadOptions` or `None`. Batching, order, sharding and
            image steps (shared by every reader and documented there). Defaults to `None`.
        extensions: tuple of str. Image file suffixes. Defaults to
            `(".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")`.
        **option_overrides: any field of `keras_face.data.ReadOptions`, replacing the one
            of `options`.

    Returns:
        `keras_face.data.FaceDataset` with `class_names` (the identity directories),
        `num_classes` and `num_images` (in this shard).

    Raises:
        keras_face.errors.DataError: the folder holds no identity directory or no image
            (naming the folder), or cannot be listed.

    Example:
        ```python
        faces = keras_face.data.read_image_folder("faces/", batch_size=64, flip=True)
        print(faces.class_names[:5], faces.num_images)
        ```
    """
    options = resolve_options(options, option_overrides)
    directory = os.fspath(directory)
    scan = scan_image_folder(directory, extensions=extensions)
    check_not_empty(directory, scan, extensions)
    if options.strict and scan.unreadable:
        path, _, reason = scan.unreadable[0]
        raise UndecodableImageError(
            f"Cannot read {path!r} ({reason}) in the image folder {directory}"
            + (f" (and {len(scan.unreadable) - 1} more)" if len(scan.unreadable) > 1 else "")
            + ". Pass strict=False to skip and count unreadable files instead."
        )
    _warn_unreadable(directory, scan.unreadable)
    return read_source(_ImageFolderSource(directory, scan), options)


def check_not_empty(directory, scan, extensions=IMAGE_EXTENSIONS):
    """Raises `keras_face.errors.DataError` naming `directory` when `scan` holds no image.

    Args:
        directory: str. The folder scanned.
        scan: `keras_face.data.ImageFolderScan`.
        extensions: tuple of str. The suffixes searched, for the message.
            Defaults to the common image suffixes.
    """
    if not scan.class_names:
        raise DataError(
            f"{directory}: the image folder has no identity sub-directories (one folder per "
            "identity, holding its images, is expected). Received: 0 identities"
        )
    if not scan.paths and not scan.unreadable:
        raise DataError(
            f"{directory}: the {len(scan.class_names)} identity directories hold no image "
            f"file ({', '.join(extensions)}). Received: 0 images"
        )


def write_image_folder(
    directory,
    images,
    labels,
    class_names=None,
    image_format="png",
    quality=95,
    progress=True,
):
    """Writes images into a folder-per-identity tree readable by `read_image_folder`.

    Args:
        directory: str or path-like. Root of the tree (created if needed).
        images: uint8 array (N, H, W, 3) or an iterable of (H, W, 3) arrays and/or encoded
            image bytes (written unchanged).
        labels: int array-like (N,). Identity of each image, in `[0, num_classes)`.
        class_names: list of str or `None`. Directory name of each label; must be sorted so
            that reading back gives the same labels. `None` uses zero-padded label numbers.
            Defaults to `None`.
        image_format: str. `"png"` (lossless) or `"jpeg"` for arrays. Defaults to `"png"`.
        quality: int. JPEG quality. Defaults to `95`.
        progress: bool. Show a progress bar. Defaults to `True`.

    Returns:
        list of the written file paths, in input order.

    Example:
        ```python
        keras_face.data.write_image_folder("faces/", images, labels)
        ```
    """
    directory = os.fspath(directory)
    image_format = check_image_format(image_format)
    labels = as_class_ids(labels, "labels").reshape(-1)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    if class_names is None:
        width = max(5, len(str(max(num_classes - 1, 0))))
        class_names = [f"{label:0{width}d}" for label in range(num_classes)]
    else:
        class_names = [str(name) for name in class_names]
        if len(class_names) < num_classes:
            raise ValueError(
                f"`class_names` has {len(class_names)} names but labels go up to "
                f"{num_classes - 1}. "
                f"Received: len(class_names)={len(class_names)}"
            )
        if class_names != sorted(class_names) or len(set(class_names)) != len(class_names):
            raise ValueError(
                "`class_names` must be sorted and unique: read_image_folder numbers identities "
                f"in sorted name order. Received: class_names={class_names[:10]}"
            )
    width = max(6, len(str(len(labels))))
    for name in class_names:
        os.makedirs(os.path.join(directory, name), exist_ok=True)
    paths = []
    count = 0
    for index, image in enumerate(
        tqdm(images, total=len(labels), desc="Writing images", disable=not progress)
    ):
        if index >= len(labels):
            raise ValueError(f"There are more images than labels ({len(labels)}).")
        data = to_encoded(image, image_format=image_format, quality=quality)
        extension = _EXTENSION_OF_FORMAT.get(image_format_of(data) or image_format, ".img")
        path = os.path.join(
            directory, class_names[int(labels[index])], f"{index:0{width}d}{extension}"
        )
        with open(path, "wb") as file:
            file.write(data)
        paths.append(path)
        count += 1
    if count != len(labels):
        raise ValueError(f"Got {count} images for {len(labels)} labels; the counts must match.")
    return paths
