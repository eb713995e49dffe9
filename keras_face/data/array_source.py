"""In-memory images (e.g. `keras_face.data.synthetic_faces`) as a source of the shared pipeline."""

import numpy as np
import tensorflow as tf

from keras_face.data.image_source import IndexedSource
from keras_face.data.pipeline import as_class_ids
from keras_face.data.pipeline import read_source
from keras_face.data.read_options import resolve_options


class ArraySource(IndexedSource):
    """A `keras_face.data.ImageSource` of uint8 image arrays held in memory.

    Payloads are the raw pixel bytes of each image (no encoding, no lossy step), turned back
    into `(H, W, 3)` images inside `tf.data` by `decode_payload`; everything else (shuffling
    by index, sharding, flipping, resizing, batching, augmentation, normalisation) is the
    pipeline every reader uses, so in-memory images give exactly the batches of the same
    images stored losslessly in a RecordIO pack or an image folder.

    Args:
        images: uint8 array `(N, H, W, 3)`.
        labels: int array-like `(N,)` of class ids.
        num_classes: int or `None`. Number of identities; `None` uses the largest label
            plus one. Defaults to `None`.
        class_names: list of str or `None`. Name of each class id. Defaults to `None`.
        description: str. Names the source in logs. Defaults to `"in-memory images"`.

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(100, 20, image_size=112)
        source = keras_face.data.ArraySource(faces.images, faces.labels)
        train = keras_face.data.read_source(source, batch_size=64, flip=True, seed=0)
        ```
    """

    def __init__(
        self,
        images,
        labels,
        num_classes=None,
        class_names=None,
        description="in-memory images",
    ):
        super().__init__()
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                "`images` must be a uint8 array (N, H, W, 3). "
                f"Received: images.shape={images.shape}, images.dtype={images.dtype}"
            )
        labels = as_class_ids(labels, "labels").reshape(-1)
        if len(labels) != len(images):
            raise ValueError(
                f"`labels` must have one class id per image ({len(images)}). "
                f"Received: len(labels)={len(labels)}"
            )
        largest = int(labels.max()) if len(labels) else -1
        if num_classes is None:
            num_classes = largest + 1
        elif not isinstance(num_classes, (int, np.integer)) or num_classes <= largest:
            raise ValueError(
                f"`num_classes` must be an int above the largest label ({largest}). "
                f"Received: num_classes={num_classes!r}"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must name the {num_classes} classes. "
                f"Received: len(class_names)={len(class_names)}"
            )
        self.images = np.ascontiguousarray(images)
        self.labels = labels.astype(np.int32)
        self.num_items = len(images)
        self.num_classes = int(num_classes)
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        self.description = description
        self.image_shape = tuple(int(size) for size in images.shape[1:])

    def read_payloads(self, items):
        return [self.images[item].tobytes() for item in items]

    def item_key(self, item):
        return int(item)

    def decode_payload(self, payload):
        """Turns the raw bytes of one image back into a uint8 `(H, W, 3)` tensor."""
        return tf.reshape(tf.io.decode_raw(payload, tf.uint8), self.image_shape)


def read_arrays(
    images, labels, options=None, *, num_classes=None, class_names=None, **option_overrides
):
    """Reads in-memory uint8 images through the shared reader pipeline.

    The in-memory counterpart of `keras_face.data.read_recordio`: same options, same
    `FaceDataset`, and the same batches as reading the same images from a lossless pack.

    Args:
        images: uint8 array `(N, H, W, 3)`.
        labels: int array-like `(N,)` of class ids.
        options: `keras_face.data.ReadOptions` or `None`. Defaults to `None`.
        num_classes: int or `None`. Number of identities; `None` uses the largest label
            plus one. Defaults to `None`.
        class_names: list of str or `None`. Name of each class id. Defaults to `None`.
        **option_overrides: any field of `keras_face.data.ReadOptions`, replacing the one
            of `options`.

    Returns:
        `keras_face.data.FaceDataset`.

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(50, 10, image_size=64)
        train = keras_face.data.read_arrays(faces.images, faces.labels, batch_size=32,
                                            shuffle=True, seed=0, flip=True)
        ```
    """
    options = resolve_options(options, option_overrides)
    source = ArraySource(images, labels, num_classes=num_classes, class_names=class_names)
    return read_source(source, options)
