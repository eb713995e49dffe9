"""Ageing of the synthetic identities: per-identity traits, per-image ages, aged parameters.

Everything here comes from the random stream `default_rng([seed, identity, 5])`, which no
other part of the generator reads, so the images of `synthetic_faces(..., ages=None)` (the
default) are bit-identical to those of the generator without ageing.

- `sample_ageing_traits`: per identity, when the hair greys and how fast, how far the
  hairline recedes, how deep the wrinkles are, how many age spots appear, and the
  centre of the identity's ages for the identity-confounded mode;
- `sample_ages`: the age of each image, uniform in years, or around the identity's
  centre (an age-identity confound: a shortcut an age-invariant method must remove);
- `age_identity`: per-image copies of the identity and nuisance parameters at an age
  (child proportions, sagging, greying, receding hairline), `strength` scaling every
  effect; the renderer adds wrinkles and spots (`renderer._render_wrinkles`).
"""

import numpy as np

AGE_STREAM = 5
_NUM_AGE_UNIFORMS = 24
MIN_AGE = 2.0
MAX_AGE = 85.0
GREY = np.array([200.0, 200.0, 200.0], dtype=np.float32)


def _stream(seed, identity):
    return np.random.default_rng([int(seed), int(identity), AGE_STREAM])


def sample_ageing_traits(identities, seed=0):
    """The ageing traits of each identity (one row per identity).

    Args:
        identities: int array. Global identity ids.
        seed: int. Global seed. Defaults to `0`.

    Returns:
        dict of float32 arrays: `age_grey_onset` U(30, 55) years, `age_grey_rate`
        U(0.6, 1.4), `age_recession` U(0, 1)^2, `age_wrinkle` U(0.5, 1.5), `age_spots`
        U(0, 1), `age_centre` U(10, 75) years, and the positions `age_spot_u`,
        `age_spot_v` `(n, 4)` of up to four age spots in the canonical face.

    Example:
        ```python
        traits = keras_face.data.synthetic.sample_ageing_traits([0, 1])
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    uniforms = (
        np.stack([_stream(seed, identity).random(_NUM_AGE_UNIFORMS) for identity in identities])
        if identities.size
        else np.zeros((0, _NUM_AGE_UNIFORMS))
    )
    column = iter(range(_NUM_AGE_UNIFORMS))

    def uniform(low, high, width=None):
        if width is None:
            return (low + (high - low) * uniforms[:, next(column)]).astype(np.float32)
        columns = [next(column) for _ in range(width)]
        return (low + (high - low) * uniforms[:, columns]).astype(np.float32)

    traits = {
        "age_grey_onset": uniform(30.0, 55.0),
        "age_grey_rate": uniform(0.6, 1.4),
        "age_recession": uniform(0.0, 1.0) ** 2,
        "age_wrinkle": uniform(0.5, 1.5),
        "age_spots": uniform(0.0, 1.0),
        "age_centre": uniform(10.0, 75.0),
        "age_spot_u": uniform(-24.0, 24.0, 4),
        "age_spot_v": uniform(-26.0, 26.0, 4),
    }
    return traits


def _check_years(ages):
    ages = np.asarray(ages, dtype=np.float32)
    bad = np.flatnonzero(~((ages >= 0) & (ages <= 120)))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"ages must be years in [0, 120]. Received: ages[{index}]={float(ages.flat[index])}"
        )
    return ages


def sample_ages(identities, num_images, seed=0, ages="uniform"):
    """The age in years of `num_images` images of each identity (identity-major).

    Image `j` of identity `k` depends only on `(seed, k, j)` (and the mode).

    Args:
        identities: int array. Global identity ids.
        num_images: int. Images per identity.
        seed: int. Global seed. Defaults to `0`.
        ages: `"uniform"` (U(2, 80), independent of the identity: every identity spans
            every age group), `("per_identity", spread)` (clip(centre + spread N(0, 1),
            2, 85) around the identity's `age_centre` U(10, 75): an age-identity
            confound), a float, a `(low, high)` range, or an array with one age per
            image. Defaults to `"uniform"`.

    Returns:
        float32 array `(len(identities) * num_images,)`.

    Example:
        ```python
        ages = keras_face.data.synthetic.sample_ages([0, 1], 5, ages=("per_identity", 8))
        ```
    """
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    total = identities.size * int(num_images)
    if isinstance(ages, str):
        if ages != "uniform":
            raise ValueError(
                "ages must be 'uniform', ('per_identity', spread), a number, a (low, high) "
                f"range or one age per image. Received: ages={ages!r}"
            )
        ages = (MIN_AGE, 80.0)
    if isinstance(ages, (tuple, list)) and len(ages) == 2 and ages[0] == "per_identity":
        spread = float(ages[1])
        if not spread >= 0:
            raise ValueError(f"The spread must be >= 0. Received: ages={ages!r}")
        blocks = []
        for identity in identities:
            rng = _stream(seed, identity)
            centre = 10.0 + 65.0 * rng.random(_NUM_AGE_UNIFORMS)[5]
            blocks.append(
                np.clip(centre + spread * rng.standard_normal(int(num_images)), MIN_AGE, MAX_AGE)
            )
        return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    if isinstance(ages, (tuple, list)) and len(ages) == 2 and np.isscalar(ages[0]):
        low, high = (float(value) for value in ages)
        _check_years([low, high])
        if high < low:
            raise ValueError(f"The age range must have low <= high. Received: ages={ages!r}")
        blocks = []
        for identity in identities:
            rng = _stream(seed, identity)
            rng.random(_NUM_AGE_UNIFORMS)  # the traits come first in the stream
            blocks.append(low + (high - low) * rng.random(int(num_images)))
        return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    values = np.asarray(ages, dtype=np.float32)
    if values.ndim == 0:
        return np.full(total, _check_years(values), dtype=np.float32)
    if values.shape != (total,):
        raise ValueError(
            f"An array of ages needs one age per image ({total}). Received: ages of shape "
            f"{values.shape}"
        )
    return _check_years(values).copy()


def age_identity(identity, nuisance, traits, ages, strength=1.0):
    """Per-image identity and nuisance parameters of faces at the given ages.

    Let `t = clip((18 - a) / 13, 0, 1)` (child) and `u = clip((a - 50) / 30, 0, 1)` (old),
    each times `strength`. Children get a shorter lower face, larger eyes and irises, a
    smaller nose and mouth, thinner and lighter brows and no beard before 16; the old
    get a sagging jaw, a longer nose, larger ears, thinner lips, less open eyes and
    desaturated skin. The hair greys by `g = clip(rate (a - onset) / 25, 0, 1)` (hair,
    and with it brows and beard, towards grey 200) and the hairline recedes by
    `8 recession clip((a - 30) / 40, 0, 1)` pixels. The landmarks stay on the template.

    Args:
        identity: dict of arrays, one row per image.
        nuisance: dict of arrays, one row per image.
        traits: dict of `sample_ageing_traits` arrays, one row per image.
        ages: float array `(B,)` in years.
        strength: float. Scale of every effect. Defaults to `1.0`.

    Returns:
        `(identity, nuisance)`: new dicts (the inputs are not modified).

    Example:
        ```python
        aged, nuisance = age_identity(identity, nuisance, traits, np.array([70.0]))
        ```
    """
    ages = np.asarray(ages, dtype=np.float32)
    s = float(strength)
    child = np.clip((18.0 - ages) / 13.0, 0.0, 1.0) * s
    old = np.clip((ages - 50.0) / 30.0, 0.0, 1.0) * s
    p = {name: np.array(value, copy=True) for name, value in identity.items()}
    n = {name: np.array(value, copy=True) for name, value in nuisance.items()}
    p["face_ry_bottom"] = p["face_ry_bottom"] - 5.0 * child
    p["eye_w"] = p["eye_w"] + 1.0 * child
    p["iris_r"] = p["iris_r"] + 0.4 * child
    p["nose_length"] = p["nose_length"] - 4.0 * child + 2.0 * old
    p["nose_w"] = np.maximum(p["nose_w"] - 0.8 * child, 1.5)
    p["mouth_w"] = p["mouth_w"] - 2.0 * child
    p["brow_thickness"] = np.maximum(p["brow_thickness"] - 0.8 * child, 0.6)
    p["brow_darkness"] = p["brow_darkness"] * (1.0 - 0.3 * np.minimum(child, 1.0))
    p["beard"] = np.where(ages < 16.0, 0, p["beard"]).astype(p["beard"].dtype)
    p["face_jaw"] = p["face_jaw"] + 0.15 * old
    p["ear_size"] = p["ear_size"] + 1.0 * old
    p["lip_upper"] = np.maximum(p["lip_upper"] - 0.8 * old, 0.4)
    p["lip_lower"] = np.maximum(p["lip_lower"] - 0.8 * old, 0.6)
    n["eye_open"] = n["eye_open"] * (1.0 - 0.15 * np.minimum(old, 1.0))
    luminance = p["skin"] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    desaturate = (0.1 * np.minimum(old, 1.0))[:, None]
    p["skin"] = p["skin"] + desaturate * (luminance[:, None] - p["skin"])
    grey = np.clip(traits["age_grey_rate"] * (ages - traits["age_grey_onset"]) / 25.0, 0.0, 1.0)
    grey = np.minimum(grey * s, 1.0)[:, None]
    p["hair_colour"] = p["hair_colour"] + 0.85 * grey * (GREY[None] - p["hair_colour"])
    recession = traits["age_recession"] * np.clip((ages - 30.0) / 40.0, 0.0, 1.0)
    p["hairline"] = p["hairline"] + 8.0 * s * recession
    for name, value in p.items():
        if value.dtype == np.float64:
            p[name] = value.astype(np.float32)
    return p, n


def wrinkle_parameters(traits, ages, strength=1.0):
    """What the renderer needs for wrinkles and spots, one row per image.

    Args:
        traits: dict of `sample_ageing_traits` arrays, one row per image.
        ages: float array `(B,)` in years.
        strength: float. Defaults to `1.0`.

    Returns:
        dict: `wrinkle` opacity `clip((a - 35) / 35, 0, 1) * age_wrinkle * strength`,
        `spots` (how many of the four spots show, 0 below `u = 0.3`), `spot_u`, `spot_v`.
    """
    ages = np.asarray(ages, dtype=np.float32)
    old = np.clip((ages - 50.0) / 30.0, 0.0, 1.0) * float(strength)
    opacity = np.clip((ages - 35.0) / 35.0, 0.0, 1.0) * traits["age_wrinkle"] * float(strength)
    spots = np.where(old > 0.3, 2 + np.floor(traits["age_spots"] * 2.999), 0)
    return {
        "wrinkle": np.clip(opacity, 0.0, 1.0).astype(np.float32),
        "spots": spots.astype(np.int64),
        "spot_u": traits["age_spot_u"].astype(np.float32),
        "spot_v": traits["age_spot_v"].astype(np.float32),
    }
