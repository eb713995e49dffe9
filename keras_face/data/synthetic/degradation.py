"""The quality-degradation model: how a level q in [0, 1] becomes a low-quality capture.

Given the renderer's clean image and a level `q` (0 pristine, 1 worst), `degrade` applies
in order: optical blur (Gaussian, sigma = 1.6 q px at 112 px), down-scaling to
`112 / (1 + 3 q)` px (in steps of 4 px, with an anti-aliasing prefilter), sensor noise at
the low resolution (sigma = 10 q^1.5 grey levels, crops of a fixed noise bank at offsets
drawn from the seeds `[seed, identity, 3, image]`), JPEG compression at quality
`95 - 75 q` for `q >= 0.2`, and bilinear up-scaling back to the output size.

This is what tutorial 04 (feature norm against quality) and `SyntheticFaces.with_quality`
measure against: the functions of q (`_low_resolution`, `_blur_sigma`, `_noise_std`,
`_jpeg_quality`) are the model, the rest applies it with per-image matrix products.
"""

import functools
import io
import math

import numpy as np
from PIL import Image

from keras_face.data.synthetic.renderer import CANVAS_SIZE

# Degradation model, as a function of q.


def _low_resolution(quality, size):
    """Side of the low-resolution capture: full size at q = 0, a quarter at q = 1 (4 px steps)."""
    target = size / (1.0 + 3.0 * quality)
    return np.clip(np.round(target / 4.0) * 4.0, 4.0, size).astype(np.int64)


def _blur_sigma(quality):
    """Optical blur (output pixels at 112 px) before sampling."""
    return (1.6 * quality).astype(np.float32)


def _noise_std(quality):
    return (10.0 * quality**1.5).astype(np.float32)


def _jpeg_quality(quality):
    return np.clip(np.round(95.0 - 75.0 * quality), 5, 95).astype(np.int64)


@functools.lru_cache(maxsize=4096)
def _sampling_matrix(size, low_size, sigma):
    """(low_size, size) Gaussian-prefiltered resampling (rows sum to 1, edges renormalised).

    Only the taps within 4 sigma of each sample are evaluated (the rest are zero). Cached
    and read-only: callers round `sigma` to 0.01 px.
    """
    sigma = max(float(sigma), 1e-3)
    centres = (np.arange(low_size, dtype=np.float64) + 0.5) * (size / low_size) - 0.5
    radius = int(math.ceil(4.0 * sigma)) + 1
    first = np.floor(centres).astype(np.int64) - radius
    taps = first[:, None] + np.arange(2 * radius + 2)[None, :]
    valid = (taps >= 0) & (taps < size)
    weights = np.exp(-0.5 * ((taps - centres[:, None]) / sigma) ** 2) * valid
    weights /= weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((low_size, size), dtype=np.float32)
    rows = np.broadcast_to(np.arange(low_size)[:, None], taps.shape)
    matrix[rows[valid], taps[valid]] = weights[valid]
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=256)
def _upsampling_matrix(low_size, size):
    """(size, low_size) bilinear interpolation with half-pixel centres (edge clamped).

    Cached and read-only.
    """
    positions = (np.arange(size, dtype=np.float64) + 0.5) * (low_size / size) - 0.5
    positions = np.clip(positions, 0.0, low_size - 1)
    left = np.floor(positions).astype(np.int64)
    right = np.minimum(left + 1, low_size - 1)
    fraction = positions - left
    matrix = np.zeros((size, low_size), dtype=np.float64)
    rows = np.arange(size)
    np.add.at(matrix, (rows, left), 1.0 - fraction)
    np.add.at(matrix, (rows, right), fraction)
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


_NOISE_BANK_SIZE = 384


@functools.lru_cache(maxsize=1)
def _noise_bank():
    """A fixed field of unit Gaussian noise; images take seeded crops of it (fast)."""
    bank = np.random.default_rng(20240229).standard_normal(
        (_NOISE_BANK_SIZE, _NOISE_BANK_SIZE, 3), dtype=np.float32
    )
    bank.flags.writeable = False
    return bank


def _noise_patch(seed, shape):
    """A `(h, w, 3)` crop of the noise bank at an offset drawn from `seed` (flipped by it too)."""
    height, width, _ = shape
    bank = _noise_bank()
    state = np.random.SeedSequence(seed).generate_state(3)
    top = int(state[0] % (_NOISE_BANK_SIZE - height + 1))
    left = int(state[1] % (_NOISE_BANK_SIZE - width + 1))
    patch = bank[top : top + height, left : left + width]
    if state[2] & 1:
        patch = patch[::-1]
    if state[2] & 2:
        patch = patch[:, ::-1]
    if state[2] & 4:
        patch = patch[:, :, ::-1]
    return patch


def _jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def degrade(images, quality, noise_seeds, jpeg):
    """Blur, down-scale, add noise, JPEG-compress and up-scale each image by its q.

    Args:
        images: float32 planar (3, B, H, W) in [0, 255].
        quality: float32 (B,).
        noise_seeds: list of seed sequences, one per image.
        jpeg: bool. Apply JPEG compression (where q >= 0.2).

    Returns:
        uint8 (B, H, W, 3).
    """
    _, batch, height, width = images.shape
    output = np.empty((batch, height, width, 3), dtype=np.uint8)
    clean = quality <= 0.0
    if np.all(clean):
        # Already clipped to [0, 255] by the lighting step; rounded half up.
        for channel in range(3):
            plane = images[channel]
            plane += 0.5
            output[..., channel] = plane
        return output
    if np.any(clean):
        output[clean] = (images[:, clean] + 0.5).astype(np.uint8).transpose(1, 2, 3, 0)
    degraded = np.nonzero(~clean)[0]
    if degraded.size == 0:
        return output
    scale = height / CANVAS_SIZE
    low_heights = _low_resolution(quality, height)
    for member in degraded.tolist():
        q = float(quality[member])
        low_h = int(low_heights[member])
        low_w = int(np.clip(round(low_h * width / height), 4, width))
        # Prefilter: optical blur plus the anti-aliasing of the down-scaling.
        factor = height / low_h
        sigma = math.sqrt(
            (float(_blur_sigma(np.float32(q))) * scale) ** 2
            + (0.5 * factor if factor > 1.0 else 0.0) ** 2
            + 0.05
        )
        rows = _sampling_matrix(height, low_h, round(sigma, 2))
        cols = _sampling_matrix(width, low_w, round(sigma * width / height, 2))
        # Two plain 2-D products per image (BLAS), channels kept side by side.
        planes = images[:, member].reshape(3 * height, width) @ cols.T  # (3H, w)
        planes = planes.reshape(3, height, low_w).transpose(1, 0, 2).reshape(height, 3 * low_w)
        low = (rows @ planes).reshape(low_h, 3, low_w).transpose(0, 2, 1)  # (h, w, 3)
        noise = float(_noise_std(np.float32(q)))
        if noise > 0.25:
            low = low + noise * _noise_patch(noise_seeds[member], low.shape)
        low = np.clip(np.rint(low), 0.0, 255.0).astype(np.uint8)
        if jpeg and q >= 0.2:
            low = _jpeg(low, int(_jpeg_quality(np.float32(q))))
        if low_h == height and low_w == width:
            output[member] = low
            continue
        up_rows = _upsampling_matrix(low_h, height)
        up_cols = _upsampling_matrix(low_w, width)
        restored = up_rows @ low.astype(np.float32).reshape(low_h, low_w * 3)  # (H, w*3)
        restored = (
            restored.reshape(height, low_w, 3).transpose(0, 2, 1).reshape(height * 3, low_w)
            @ up_cols.T
        )
        restored = restored.reshape(height, 3, width).transpose(0, 2, 1)
        output[member] = np.clip(np.rint(restored), 0, 255).astype(np.uint8)
    return output
