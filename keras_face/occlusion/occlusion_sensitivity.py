"""Occlusion sensitivity: how much the identification loss rises when each grid cell is hidden."""

import keras
import numpy as np
from keras import ops

from keras_face.occlusion.occlusion_masks import grid_cell_masks


def occlusion_sensitivity(embedding_model, head, images, labels, grid=4, fill=0.0, batch_size=64):
    """Mean increase of the identification loss when each cell of a grid is occluded.

    For every cell of a `grid x grid` partition of the image, the cell is set to `fill`
    and the softmax cross-entropy of the head's plain scaled cosine (inference mode, no
    margin) is compared with the clean image's: the map shows where the recogniser
    looks. A model trained against occlusions gives a flatter map.

    Args:
        embedding_model: `keras.Model` from images to embeddings.
        head: the trained margin head (its class centres).
        images: array `(N, H, W, C)`, preprocessed as for training.
        labels: int array `(N,)` of the head's classes.
        grid: int. Cells per side. Defaults to `4`.
        fill: float. Value of the hidden pixels. Defaults to `0.0`.
        batch_size: int. Defaults to `64`.

    Returns:
        float32 array `(grid, grid)`: mean loss increase per cell.

    Example:
        ```python
        heat = keras_face.occlusion.occlusion_sensitivity(backbone, head, images, labels)
        plt.imshow(heat)
        ```
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels).reshape(-1)
    if images.ndim != 4 or len(images) != len(labels) or not len(images):
        raise ValueError(
            "images must be (N, H, W, C) with one label each. Received: images of shape "
            f"{images.shape} and {len(labels)} labels"
        )
    cells = grid_cell_masks(images.shape[1:3], grid)

    def loss(batch_images, batch_labels):
        embeddings = embedding_model(batch_images, training=False)
        logits = head([embeddings, batch_labels], training=False)
        return ops.convert_to_numpy(
            keras.losses.sparse_categorical_crossentropy(
                batch_labels, ops.cast(logits, "float32"), from_logits=True
            )
        )

    increase = np.zeros(grid * grid, np.float64)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        batch_labels = labels[start : start + batch_size].astype(np.int32)
        clean = loss(batch, batch_labels)
        for index, cell in enumerate(cells):
            mask = cell[None, :, :, None]
            occluded = batch * (1.0 - mask) + fill * mask
            increase[index] += float(np.sum(loss(occluded, batch_labels) - clean))
    return (increase / len(images)).reshape(grid, grid).astype(np.float32)
