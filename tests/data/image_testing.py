"""Small images made in the tests of keras_face.data formats (no files are downloaded)."""

import io

import numpy as np
from PIL import Image


def make_images(count, height=16, width=20, seed=0):
    """Distinct uint8 RGB images: a gradient shifted per image plus random texture."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    images = []
    for index in range(count):
        base = np.stack(
            [(xs * 7 + index * 11) % 256, (ys * 5 + index * 3) % 256, (xs + ys + index) % 256], -1
        )
        noise = rng.integers(0, 40, (height, width, 3))
        images.append(((base + noise) % 256).astype(np.uint8))
    return np.stack(images)


def encode(image, image_format="PNG", quality=95):
    buffer = io.BytesIO()
    options = {"quality": quality} if image_format == "JPEG" else {}
    Image.fromarray(image).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def decode_with_tensorflow(data):
    import tensorflow as tf

    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
