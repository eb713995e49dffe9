"""Building a verification `.bin` file from an image folder and a pairs list."""

import os

from tqdm.auto import tqdm

from keras_face.data.image_codec import decode_image
from keras_face.data.image_codec import encode_image
from keras_face.data.image_codec import image_format_of
from keras_face.data.pairs_file import PairsFileError
from keras_face.data.pairs_file import load_pair_images
from keras_face.data.pairs_file import read_pairs_file
from keras_face.data.preprocessing import check_image_size
from keras_face.data.verification_bin import write_bin


def build_verification_bin(
    pairs_file, images_dir, output_path, image_size=None, quality=95, progress=True
):
    """Writes the `.bin` file of the pairs of a pairs list (LFW `pairs.txt` or `a b 1|0`).

    Without `image_size` the JPEG and PNG files are stored byte for byte (so the `.bin`
    decodes to exactly the pixels of the files) and other formats as PNG; every image must
    decode and all must have one size. With `image_size` the images are decoded, resized
    (bilinear, see `keras_face.data.load_pair_images`) and stored as JPEG at `quality`.
    The images must already be aligned crops (112x112 for the insightface protocol).

    Args:
        pairs_file: str or path-like. The pairs list (see `keras_face.data.read_pairs_file`).
        images_dir: str or path-like. Folder the image paths of the list are relative to.
        output_path: str or path-like. The `.bin` file to write.
        image_size: int, `(height, width)` or `None`. Resize to this size.
            Defaults to `None`.
        quality: int. JPEG quality of resized images. Defaults to `95`.
        progress: bool. Show a progress bar. Defaults to `True`.

    Returns:
        dict with `path`, `num_pairs`, `num_same` and `image_shape`.

    Raises:
        PairsFileError: a bad line of the list, an undecodable image, or images of several
            sizes without `image_size` (the message names the file).
        FileNotFoundError: an image of the list is missing (named with its line).

    Example:
        ```python
        keras_face.data.build_verification_bin("lfw/pairs.txt", "lfw/aligned", "lfw.bin")
        images, issame = keras_face.data.read_bin("lfw.bin")
        ```
    """
    image_size = check_image_size(image_size)
    images_dir = os.fspath(images_dir)
    pairs = read_pairs_file(pairs_file, images_dir=images_dir)
    issame = [bool(pair[2]) for pair in pairs]
    if image_size is not None:
        images, _ = load_pair_images(pairs, images_dir, image_size=image_size, progress=progress)
        write_bin(output_path, images, issame, quality=quality, progress=False)
        return _summary(output_path, issame, image_size)
    encoded, shapes = [], {}
    relatives = [relative for pair in pairs for relative in pair[:2]]
    for relative in tqdm(relatives, desc="Reading pair images", disable=not progress):
        path = os.path.join(images_dir, relative)
        with open(path, "rb") as file:
            data = file.read()
        try:
            pixels = decode_image(data)
        except Exception as error:  # Pillow raises many types on bad data
            raise PairsFileError(
                f"Cannot decode a pair image ({error}). Received: path={path!r}"
            ) from error
        shapes.setdefault(pixels.shape[:2], path)
        if image_format_of(data) not in ("jpeg", "png"):
            data = encode_image(pixels, image_format="png")
        encoded.append(data)
    if len(shapes) > 1:
        examples = ", ".join(f"{shape} ({path})" for shape, path in list(shapes.items())[:3])
        raise PairsFileError(
            f"The images of {os.fspath(pairs_file)} have several sizes: {examples}; pass "
            f"image_size to resize them. Received: image_size={image_size!r}"
        )
    write_bin(output_path, encoded, issame, progress=False)
    shape = next(iter(shapes)) if shapes else None
    return _summary(output_path, issame, shape)


def _summary(path, issame, image_shape):
    return {
        "path": os.fspath(path),
        "num_pairs": len(issame),
        "num_same": int(sum(issame)),
        "image_shape": None if image_shape is None else tuple(int(v) for v in image_shape),
    }
