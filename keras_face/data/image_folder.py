"""Image folders with one sub-directory per identity: listing, reading and writing."""

import os

import numpy as np
from tqdm.auto import tqdm

from keras_face.data.image_codec import check_image_format
from keras_face.data.image_codec import image_format_of
from keras_face.data.image_codec import to_encoded
from keras_face.data.image_source import IndexedSource
from keras_face.data.pipeline import as_class_ids
from keras_face.data.pipeline import read_source
from keras_face.data.read_options import resolve_options

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_EXTENSION_OF_FORMAT = {
    "jpeg": ".jpg",
    "png": ".png",
    "gif": ".gif",
    "bmp": ".bmp",
    "webp": ".webp",
}


def list_image_folder(directory, extensions=IMAGE_EXTENSIONS, follow_links=False):
    """Lists the images of a folder-per-identity tree.

    Every sub-directory of `directory` is one identity; its label is the index of its name in
    the sorted list of sub-directory names (empty identities keep their label). Images are
    searched recursively inside each identity directory and sorted by path.

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
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Image folder not found. Received: directory={directory!r}")
    extensions = tuple(extension.lower() for extension in extensions)
    class_names = sorted(
        name for name in os.listdir(directory) if os.path.isdir(os.path.join(directory, name))
    )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = []
        for root, dirs, files in os.walk(os.path.join(directory, name), followlinks=follow_links):
            dirs.sort()
            found.extend(
                os.path.join(root, file) for file in files if file.lower().endswith(extensions)
            )
        found.sort()
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, np.asarray(labels, dtype=np.int32), class_names


class _ImageFolderSource(IndexedSource):
    def __init__(self, directory, paths, labels, class_names):
        super().__init__()
        self.directory = directory
        self.paths = paths
        self.labels = labels
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.num_items = len(paths)
        self.description = directory

    def read_payloads(self, items):
        payloads = []
        for item in items:
            with open(self.paths[item], "rb") as file:
                payloads.append(file.read())
        return payloads

    def item_key(self, item):
        return os.path.relpath(self.paths[item], self.directory)


def read_image_folder(directory, options=None, *, extensions=IMAGE_EXTENSIONS, **option_overrides):
    """Reads a folder-per-identity tree through the shared reader pipeline.

    Labels follow `keras_face.data.list_image_folder` (sorted identity names). Shuffling
    permutes the files every pass; sharding gives each pipeline every `num_shards`-th file.
    An undecodable file is skipped and counted with its path relative to `directory` as
    key, or raises in strict mode, as in `keras_face.data.read_recordio`.

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

    Example:
        ```python
        faces = keras_face.data.read_image_folder("faces/", batch_size=64, flip=True)
        print(faces.class_names[:5], faces.num_images)
        ```
    """
    options = resolve_options(options, option_overrides)
    directory = os.fspath(directory)
    paths, labels, class_names = list_image_folder(directory, extensions=extensions)
    return read_source(_ImageFolderSource(directory, paths, labels, class_names), options)


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
