"""Appearance parameters: everything the synthetic faces draw from their seeds.

This module owns the random streams and what is drawn from them, as named arrays:

- `sample_identity_parameters`: the fixed appearance of an identity (face shape, eyes,
  brows, nose, mouth, ears, skin / hair / iris / lip colours, hair style, glasses, beard,
  mole), from the stream `default_rng([seed, identity, 0])`;
- `sample_image_parameters`: the per-image nuisance (pose, expression, gaze, lighting,
  colour cast, background, clothing, occlusion, glasses taken off), from
  `default_rng([seed, identity, 1])`;
- `sample_quality`: the per-image quality level `q`, from `default_rng([seed, identity, 2])`.

The renderer (`renderer.py`) turns these arrays into pixels and the degradation model
(`degradation.py`) turns `q` into a low-quality capture; neither draws random numbers,
except the sensor noise (seeds `[seed, identity, 3, image]`). The pairs of `synthetic_pairs`
use `[seed, 4]`.

A new factor gets a stream of its own (e.g. `[seed, identity, 5]`) so that every existing
draw, and so every existing image, stays bit-identical. Do not add columns to the uniform
matrices: `rng.random((n, 96))` fills row-major, so a wider matrix shifts every draw.
"""

import math

import numpy as np

_NUM_IDENTITY_UNIFORMS = 80
_NUM_IMAGE_UNIFORMS = 96

# Palettes (RGB) of the discrete appearance traits, with their probabilities.
_HAIR_COLOURS = np.array(
    [[22, 18, 17], [58, 40, 30], [105, 72, 45], [196, 165, 110], [150, 72, 38], [168, 166, 160]],
    dtype=np.float32,
)
_HAIR_PROBABILITIES = np.array([0.3, 0.25, 0.15, 0.12, 0.06, 0.12])
_IRIS_COLOURS = np.array(
    [[52, 30, 18], [105, 66, 34], [128, 108, 58], [78, 118, 78], [70, 110, 168], [118, 128, 138]],
    dtype=np.float32,
)
_IRIS_PROBABILITIES = np.array([0.3, 0.25, 0.12, 0.1, 0.15, 0.08])
_FRAME_COLOURS = np.array(
    [[20, 20, 22], [90, 60, 40], [175, 175, 180], [140, 30, 40], [30, 50, 120]], dtype=np.float32
)
_MASK_COLOURS = np.array([[236, 236, 236], [150, 190, 215], [40, 40, 46]], dtype=np.float32)
_SKIN_LIGHT = np.array([238.0, 206.0, 182.0], dtype=np.float32)
_SKIN_DARK = np.array([88.0, 58.0, 44.0], dtype=np.float32)
_LIP_RED = np.array([172.0, 62.0, 72.0], dtype=np.float32)


class _Columns:
    """Hands out the columns of a uniform matrix in a fixed order."""

    def __init__(self, uniforms):
        self.uniforms = uniforms
        self.index = 0

    def uniform(self, low=0.0, high=1.0):
        column = self.uniforms[:, self.index]
        self.index += 1
        return (low + (high - low) * column).astype(np.float32)

    def normal(self, mean=0.0, std=1.0):
        # Box-Muller on two uniform columns (keeps every draw a uniform column).
        first = np.maximum(self.uniforms[:, self.index], 1e-12)
        second = self.uniforms[:, self.index + 1]
        self.index += 2
        value = np.sqrt(-2.0 * np.log(first)) * np.cos(2.0 * math.pi * second)
        return (mean + std * value).astype(np.float32)

    def choice(self, probabilities):
        column = self.uniforms[:, self.index]
        self.index += 1
        edges = np.cumsum(probabilities) / np.sum(probabilities)
        return np.minimum(np.searchsorted(edges, column, side="right"), len(probabilities) - 1)


def _palette(columns, colours, probabilities, jitter):
    index = columns.choice(probabilities)
    noise = np.stack([columns.uniform(-jitter, jitter) for _ in range(3)], axis=1)
    return np.clip(colours[index] + noise, 0, 255).astype(np.float32)


def sample_identity_parameters(identities, seed=0):
    """Draw the fixed appearance of each identity.

    Args:
        identities: int array. Global identity ids (identity `k` always gets the same face
            for the same seed).
        seed: int. Global seed. Defaults to `0`.

    Returns:
        dict of float32 / int arrays with one row per identity (geometry in pixels of the
        112x112 canonical face, colours in RGB 0..255; `beard` is 0 none, 1 full,
        2 moustache, 3 goatee).

    Example:
        ```python
        params = keras_face.data.synthetic.sample_identity_parameters([0, 1, 2])
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    uniforms = (
        np.stack(
            [
                np.random.default_rng([int(seed), int(identity), 0]).random(_NUM_IDENTITY_UNIFORMS)
                for identity in identities
            ]
        )
        if identities.size
        else np.zeros((0, _NUM_IDENTITY_UNIFORMS))
    )
    c = _Columns(uniforms)
    p = {}
    p["face_rx"] = c.uniform(33.5, 41.5)
    p["face_ry_top"] = c.uniform(47.0, 56.0)
    p["face_ry_bottom"] = c.uniform(44.0, 53.0)
    p["face_jaw"] = c.uniform(-0.15, 0.4)
    p["face_cy"] = c.uniform(58.5, 63.0)
    tone = c.uniform() ** 1.15
    redness = c.uniform(-1.0, 1.0)
    yellowness = c.uniform(-1.0, 1.0)
    skin = _SKIN_LIGHT[None] + tone[:, None] * (_SKIN_DARK - _SKIN_LIGHT)[None]
    skin = (
        skin
        + redness[:, None] * np.array([9.0, -4.0, -5.0])
        + yellowness[:, None] * np.array([4.0, 4.0, -11.0])
    )
    p["skin"] = np.clip(skin, 0, 255).astype(np.float32)
    p["hair_colour"] = _palette(c, _HAIR_COLOURS, _HAIR_PROBABILITIES, 16.0)
    p["bald"] = (c.uniform() < 0.08).astype(np.float32)
    p["hairline"] = c.uniform(15.0, 31.0)
    p["hairline_curve"] = c.uniform(-6.0, 10.0)
    p["hair_part"] = c.uniform(-12.0, 12.0)
    p["hairline_tilt"] = c.uniform(-0.15, 0.15)
    p["hair_volume"] = c.uniform(2.0, 11.0)
    p["hair_length"] = c.uniform() ** 1.3
    p["eye_dx"] = c.uniform(-2.6, 2.6)
    p["eye_dy"] = c.uniform(-2.5, 2.5)
    p["eye_w"] = c.uniform(5.4, 8.2)
    p["eye_h"] = c.uniform(2.2, 3.9)
    p["eye_tilt"] = c.uniform(-0.2, 0.2)
    p["iris_r"] = c.uniform(2.0, 3.1)
    p["iris_colour"] = _palette(c, _IRIS_COLOURS, _IRIS_PROBABILITIES, 14.0)
    p["brow_gap"] = c.uniform(6.5, 11.0)
    p["brow_thickness"] = c.uniform(1.6, 4.2)
    p["brow_half_length"] = c.uniform(6.5, 10.5)
    p["brow_arch"] = c.uniform(-0.5, 3.2)
    p["brow_tilt"] = c.uniform(-0.12, 0.2)
    p["brow_dx"] = c.uniform(-2.0, 2.0)
    p["brow_darkness"] = c.uniform(0.4, 1.0)
    p["nose_dy"] = c.uniform(-3.0, 3.0)
    p["nose_w"] = c.uniform(3.4, 7.0)
    p["nose_length"] = c.uniform(13.0, 22.0)
    p["nostril_r"] = c.uniform(1.1, 2.0)
    p["nose_bulb"] = c.uniform(2.5, 5.0)
    p["mouth_dy"] = c.uniform(-3.0, 3.0)
    p["mouth_w"] = c.uniform(10.5, 17.0)
    p["lip_upper"] = c.uniform(1.4, 4.0)
    p["lip_lower"] = c.uniform(2.0, 5.5)
    lip_mix = c.uniform(0.15, 0.6)
    p["lip_colour"] = (p["skin"] + lip_mix[:, None] * (_LIP_RED[None] - p["skin"])).astype(
        np.float32
    )
    p["ear_size"] = c.uniform(-1.5, 2.5)
    p["ear_dy"] = c.uniform(-3.0, 3.0)
    p["neck_w"] = c.uniform(13.0, 19.0)
    p["glasses"] = (c.uniform() < 0.25).astype(np.float32)
    p["glasses_w"] = c.uniform(9.0, 12.5)
    p["glasses_h"] = c.uniform(6.5, 9.5)
    p["glasses_rim"] = c.uniform(0.8, 2.2)
    p["glasses_square"] = c.uniform(0.0, 1.0)
    p["glasses_colour"] = _palette(c, _FRAME_COLOURS, np.ones(len(_FRAME_COLOURS)), 12.0)
    p["glasses_tint"] = np.where(c.uniform() < 0.15, 0.82, 0.08).astype(np.float32)
    p["beard"] = np.where(c.uniform() < 0.2, 1 + c.choice([0.5, 0.3, 0.2]), 0).astype(np.int64)
    p["beard_density"] = c.uniform(0.55, 0.95)
    p["beard_top"] = c.uniform(-2.0, 4.0)
    p["mole"] = (c.uniform() < 0.35).astype(np.float32)
    p["mole_u"] = c.uniform(-24.0, 24.0)
    p["mole_v"] = c.uniform(-28.0, 30.0)
    p["mole_r"] = c.uniform(0.8, 1.8)
    return p


def sample_image_parameters(
    identities, num_images, seed=0, nuisance=1.0, occlusion_probability=None
):
    """Draw the per-image nuisance of `num_images` images of each identity.

    Image `j` of identity `k` depends only on `(seed, k, j)`.

    Args:
        identities: int array. Global identity ids.
        num_images: int. Images per identity.
        seed: int. Global seed. Defaults to `0`.
        nuisance: float. Scale of every nuisance (pose, expression, lighting, colour
            cast, occlusion probability); `0` renders each identity's neutral face.
            Defaults to `1.0`.
        occlusion_probability: float in [0, 1] or `None`. Probability that an image has
            an occluder (the same uniform draw decides, so raising it only adds
            occluders); `0` gives a clean set. Defaults to `None`: `0.12 * nuisance`.

    Returns:
        dict of arrays with `len(identities) * num_images` rows, identity-major
        (`occlusion` is 0 none, 1 face mask, 2 bar, 3 blob).

    Example:
        ```python
        nuisance = keras_face.data.synthetic.sample_image_parameters([0, 1], 4)
        ```
    """
    if occlusion_probability is not None and not 0.0 <= float(occlusion_probability) <= 1.0:
        raise ValueError(
            "occlusion_probability must be in [0, 1] or None. "
            f"Received: occlusion_probability={occlusion_probability!r}"
        )
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    blocks = [
        np.random.default_rng([int(seed), int(identity), 1]).random(
            (int(num_images), _NUM_IMAGE_UNIFORMS)
        )
        for identity in identities
    ]
    uniforms = np.concatenate(blocks) if blocks else np.zeros((0, _NUM_IMAGE_UNIFORMS))
    k = float(nuisance)
    c = _Columns(uniforms)
    p = {}
    p["rotation"] = np.clip(c.normal(0.0, math.radians(4.0) * k), -0.3, 0.3)
    p["scale"] = np.exp(np.clip(c.normal(0.0, 0.04 * k), -0.15, 0.15)).astype(np.float32)
    p["shift_x"] = np.clip(c.normal(0.0, 1.3 * k), -5.0, 5.0)
    p["shift_y"] = np.clip(c.normal(0.0, 1.3 * k), -5.0, 5.0)
    p["yaw"] = np.clip(c.normal(0.0, 0.1 * k), -0.35, 0.35)
    p["pitch"] = np.clip(c.normal(0.0, 0.08 * k), -0.3, 0.3)
    p["smile"] = np.clip(c.normal(0.3 * k, 0.6 * k), -1.0, 1.6)
    p["mouth_open"] = np.clip(c.normal(-0.2, 0.7) * k, 0.0, 2.0) * 2.5
    p["brow_raise"] = np.clip(c.normal(0.0, 0.9 * k), -2.5, 3.0)
    eye_open = 1.0 - k * c.uniform(0.0, 0.4)
    blink = c.uniform() < 0.04 * k
    p["eye_open"] = np.where(blink, 0.12, eye_open).astype(np.float32)
    p["gaze_x"] = np.clip(c.normal(0.0, 0.6 * k), -1.5, 1.5)
    p["gaze_y"] = np.clip(c.normal(0.0, 0.4 * k), -1.0, 1.0)
    p["light_azimuth"] = c.uniform(0.0, 2.0 * math.pi)
    p["light_strength"] = c.uniform(0.0, 0.5) * min(k, 1.6)
    p["exposure"] = np.exp(np.clip(c.normal(0.0, 0.12 * k), -0.45, 0.45)).astype(np.float32)
    p["contrast"] = np.exp(np.clip(c.normal(0.0, 0.1 * k), -0.35, 0.35)).astype(np.float32)
    p["colour_gain"] = np.exp(
        np.clip(np.stack([c.normal(0.0, 0.05 * k) for _ in range(3)], 1), -0.2, 0.2)
    ).astype(np.float32)
    p["background"] = np.stack([c.uniform(15.0, 240.0) for _ in range(3)], 1)
    p["background_gradient"] = np.stack([c.normal(0.0, 0.35) for _ in range(2)], 1)
    p["clothing"] = np.stack([c.uniform(10.0, 240.0) for _ in range(3)], 1)
    p["hairline_jitter"] = c.normal(0.0, 0.8 * k)
    p["hair_volume_jitter"] = c.normal(0.0, 0.8 * k)
    p["glasses_off"] = (c.uniform() < 0.15 * min(k, 1.0)).astype(np.float32)
    rate = 0.12 * k if occlusion_probability is None else float(occlusion_probability)
    occluded = c.uniform() < rate
    kind = 1 + c.choice([0.35, 0.4, 0.25])
    p["occlusion"] = np.where(occluded, kind, 0).astype(np.int64)
    # Both colours are kept so that an occluder can be forced later (`with_occlusion`).
    p["occluder_colour"] = np.stack([c.uniform(10.0, 245.0) for _ in range(3)], 1).astype(
        np.float32
    )
    p["mask_colour"] = _MASK_COLOURS[c.choice(np.ones(len(_MASK_COLOURS)))]
    p["occlusion_colour"] = np.where(
        (p["occlusion"] == 1)[:, None], p["mask_colour"], p["occluder_colour"]
    ).astype(np.float32)
    p["occlusion_u"] = c.uniform(-26.0, 26.0)
    p["occlusion_v"] = c.uniform(-30.0, 36.0)
    p["occlusion_angle"] = c.uniform(0.0, math.pi)
    p["occlusion_length"] = c.uniform(12.0, 45.0)
    p["occlusion_width"] = c.uniform(3.0, 9.0)
    p["mask_top"] = c.uniform(-4.0, 2.0)
    return p


def sample_quality(identities, num_images, seed=0, quality="realistic"):
    """Draw the quality level `q` of each image (0 pristine, 1 worst).

    Args:
        identities: int array. Global identity ids.
        num_images: int. Images per identity.
        seed: int. Global seed. Defaults to `0`.
        quality: `"realistic"` (Beta(1.2, 3): mostly good, a tail of bad images),
            `"uniform"` (U(0, 1)), `None` (all 0), a float (constant), a `(low, high)`
            pair (uniform in the range) or an array with one value per image.
            Defaults to `"realistic"`.

    Returns:
        float32 array with `len(identities) * num_images` values in [0, 1].

    Example:
        ```python
        q = keras_face.data.synthetic.sample_quality([0, 1], 10, quality="uniform")
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    total = identities.size * int(num_images)
    if quality is None:
        return np.zeros(total, dtype=np.float32)
    if isinstance(quality, str):
        if quality not in ("realistic", "uniform"):
            raise ValueError(
                "`quality` must be 'realistic', 'uniform', None, a float, a (low, high) "
                f"pair or an array. Received: quality={quality!r}"
            )
        values = []
        for identity in identities:
            rng = np.random.default_rng([int(seed), int(identity), 2])
            if quality == "uniform":
                values.append(rng.random(int(num_images)))
            else:
                values.append(rng.beta(1.2, 3.0, int(num_images)))
        values = np.concatenate(values) if values else np.zeros(0)
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    array = np.asarray(quality, dtype=np.float64)
    if array.ndim == 0:
        values = np.full(total, float(array))
    elif array.shape == (2,) and total != 2:
        low, high = float(array[0]), float(array[1])
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(
                f"A quality range must satisfy 0 <= low <= high <= 1. Received: quality={quality!r}"
            )
        unit = sample_quality(identities, num_images, seed, "uniform")
        values = low + (high - low) * unit.astype(np.float64)
    elif array.shape == (total,):
        values = array
    else:
        raise ValueError(
            f"`quality` as an array needs one value per image ({total}). "
            f"Received: quality.shape={array.shape}"
        )
    if np.any(values < 0.0) or np.any(values > 1.0):
        raise ValueError(
            f"Quality levels must lie in [0, 1]. Received: min={values.min()}, max={values.max()}"
        )
    return values.astype(np.float32)
