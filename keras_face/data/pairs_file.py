"""Verification pair lists: LFW `pairs.txt` and plain `path_a path_b 1|0` files, and their images.

Three line forms are read, mixed freely, one pair per line (blank lines are ignored):

| line | pair |
| --- | --- |
| `path_a path_b 1` (or `0`, `true`, `false`) | two paths relative to the image folder |
| `name n1 n2` (LFW, same person) | `name/name_000n1.jpg`, `name/name_000n2.jpg`: genuine |
| `name1 n1 name2 n2` (LFW) | `name1/name1_000n1.jpg`, `name2/name2_000n2.jpg`: impostor |

A first line of two integers is LFW's `folds pairs_per_fold` header and is skipped.
"""

import errno
import os

import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError
from tqdm.auto import tqdm

from keras_face.data.preprocessing import check_image_size
from keras_face.errors import KerasFaceError

_FLAGS = {"0": False, "1": True, "true": True, "false": False}


class PairsFileError(KerasFaceError, ValueError):
    """A pairs file that cannot be read: a bad line (named as `file:line`) or no pairs.

    Example:
        ```python
        try:
            pairs = keras_face.data.read_pairs_file("pairs.txt")
        except keras_face.data.PairsFileError as error:
            print(error)  # pairs.txt:7: expected 'path_a path_b 1|0' or an LFW pairs line ...
        ```
    """


def _lfw_path(name, number):
    return f"{name}/{name}_{int(number):04d}.jpg"


def _parse_line(tokens):
    """The `(path_a, path_b, issame)` of one line's tokens, or `None` if no form matches."""
    if len(tokens) == 3 and tokens[2].lower() in _FLAGS:
        return tokens[0], tokens[1], _FLAGS[tokens[2].lower()]
    if len(tokens) == 3 and tokens[1].isdigit() and tokens[2].isdigit():
        return _lfw_path(tokens[0], tokens[1]), _lfw_path(tokens[0], tokens[2]), True
    if len(tokens) == 4 and tokens[1].isdigit() and tokens[3].isdigit():
        return _lfw_path(tokens[0], tokens[1]), _lfw_path(tokens[2], tokens[3]), False
    return None


def read_pairs_file(path, images_dir=None):
    """Reads a verification pairs file: LFW `pairs.txt` or `path_a path_b 1|0` lines.

    The line forms are listed in the module docstring. With `images_dir` every image of
    every pair must exist under it.

    Args:
        path: str or path-like. The pairs file.
        images_dir: str, path-like or `None`. Folder the image paths are relative to;
            when given, each image is checked to exist. Defaults to `None`.

    Returns:
        list of `(relative_path_a, relative_path_b, issame)` tuples (str, str, bool), in
        file order.

    Raises:
        PairsFileError: a line matches no form (the message names `file:line` and quotes
            the line), or the file holds no pair.
        FileNotFoundError: the file, or an image of a pair under `images_dir` (the message
            names the `file:line` of the pair).

    Example:
        ```python
        pairs = keras_face.data.read_pairs_file("lfw/pairs.txt", images_dir="lfw/images")
        print(pairs[0])  # ('Abel_Pacheco/Abel_Pacheco_0001.jpg', '..._0004.jpg', True)
        ```

    References:
        - [Huang et al., 2007, Labeled Faces in the Wild](http://vis-www.cs.umass.edu/lfw/)
    """
    path = os.fspath(path)
    pairs = []
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if number == 1 and len(tokens) == 2 and all(token.isdigit() for token in tokens):
                continue  # LFW's "folds pairs_per_fold" header
            pair = _parse_line(tokens)
            if pair is None:
                raise PairsFileError(
                    f"{path}:{number}: expected 'path_a path_b 1|0' or an LFW pairs line "
                    f"('name n1 n2' or 'name1 n1 name2 n2'). Received: line={line.strip()!r}"
                )
            if images_dir is not None:
                for relative in pair[:2]:
                    image_path = os.path.join(os.fspath(images_dir), relative)
                    if not os.path.exists(image_path):
                        raise FileNotFoundError(
                            errno.ENOENT, f"Image of {path}:{number} not found", image_path
                        )
            pairs.append(pair)
    if not pairs:
        raise PairsFileError(f"No pairs in the pairs file. Received: path={path!r}")
    return pairs


def load_pair_images(pairs, images_dir, image_size=None, progress=False):
    """Loads the images of verification pairs for `keras_face.evaluation.verify`.

    Images are decoded with Pillow as RGB and, with `image_size`, resized with Pillow's
    bilinear filter. The result is what `keras_face.data.write_bin` stores and what
    `keras_face.data.read_bin` returns.

    Args:
        pairs: list of `(relative_path_a, relative_path_b, issame)`, e.g. from
            `keras_face.data.read_pairs_file`.
        images_dir: str or path-like. Folder the paths are relative to.
        image_size: int, `(height, width)` or `None`. Resize every image to this size;
            `None` requires all images to have one size. Defaults to `None`.
        progress: bool. Show a progress bar. Defaults to `False`.

    Returns:
        `(images, issame)`: uint8 array `(2N, H, W, 3)` (pair `i` is images `2i`, `2i + 1`)
        and bool array `(N,)`.

    Raises:
        PairsFileError: an image cannot be decoded (named), or the images have several
            sizes and `image_size` is `None`.

    Example:
        ```python
        pairs = keras_face.data.read_pairs_file("lfw/pairs.txt", images_dir="lfw/images")
        images, issame = keras_face.data.load_pair_images(pairs, "lfw/images", image_size=112)
        keras_face.data.write_bin("lfw.bin", images, issame)
        ```
    """
    image_size = check_image_size(image_size)
    images_dir = os.fspath(images_dir)
    images = []
    paths = [relative for pair in pairs for relative in pair[:2]]
    for relative in tqdm(paths, desc="Loading pair images", disable=not progress):
        image_path = os.path.join(images_dir, relative)
        try:
            with Image.open(image_path) as image:
                image = image.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise PairsFileError(
                f"Cannot decode a pair image ({error}). Received: path={image_path!r}"
            ) from error
        if image_size is not None:
            height, width = image_size
            image = image.resize((width, height), Image.BILINEAR)
        images.append(np.asarray(image))
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise PairsFileError(
            f"The pair images have several sizes {shapes[:5]}; pass image_size to resize them. "
            f"Received: image_size={image_size!r}"
        )
    issame = np.array([bool(pair[2]) for pair in pairs], dtype=bool)
    if not images:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8), issame
    return np.stack(images), issame
