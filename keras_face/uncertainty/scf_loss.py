"""SCF's training loss: the KL divergence from a Dirac at the class centre to an r-radius vMF."""

import math

from keras import ops

from keras_face.uncertainty.vmf import log_vmf_normalizer
from keras_face.uncertainty.vmf import validate_dim


def vmf_dirac_kl(cosine, kappa, dim, radius=64.0, authors_constant=True):
    """Per-sample SCF loss: `KL(delta(z - w_y) || q(z | x))` up to the Dirac's entropy.

    With `q` the vMF on the sphere of radius `r` centred on the embedding direction `mu`
    with concentration `kappa`, and `w_y` the class centre on the same sphere, the
    divergence is `-log q(w_y | x)`:

    `L = -kappa cos(mu, w_y) - log C_d(kappa) + d log r`

    where `log C_d` is the unit-sphere normaliser (`log_vmf_normalizer`). `d log r` is the
    constant of the authors' `kl_delta_vmf.py` (`(d/2) log 2 pi + d log r` next to their
    `log I_nu`); the exact r-radius density would have `(d - 1) log r`. The constant
    changes no gradient. Unlike the authors' code there are no `1e-6` floors and no
    float32 Bessel function: their `log(1e-6 + ive(nu, kappa)) + kappa` is wrong
    wherever `ive < 1e-6` (`kappa < ~3,700` at `d = 512`), which moves the optimum from
    `A_d^-1(cos)` to `nu / (1 - cos)`.

    Its derivative in `kappa` is `A_d(kappa) - cos`: the minimum is at
    `kappa_for_cosine(cos, d)`, so a trained `kappa` is a monotone function of how close
    an image sits to its class centre.

    Args:
        cosine: float tensor `(B,)`, cosine between each embedding and its class centre
            (`target_cosine`).
        kappa: float tensor `(B,)` of concentrations, `> 0`.
        dim: int. Embedding dimension `d`, at least 16.
        radius: float. Radius `r` of the sphere. Defaults to `64.0` (the authors' `r`, the
            scale `s` of the ArcFace classifier).
        authors_constant: bool. Add `d log r`, so that values equal the authors' loss
            without floors. Defaults to `True`.

    Returns:
        float32 tensor `(B,)`.

    Example:
        ```python
        cosine = keras_face.uncertainty.target_cosine(embeddings, centres, labels)
        loss = keras.ops.mean(keras_face.uncertainty.vmf_dirac_kl(cosine, kappa, dim=512))
        ```

    References:
        - [Li et al., Spherical Confidence Learning for Face Recognition, CVPR 2021](https://openaccess.thecvf.com/content/CVPR2021/html/Li_Spherical_Confidence_Learning_for_Face_Recognition_CVPR_2021_paper.html)
    """
    dim = validate_dim(dim)
    radius = float(radius)
    if not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a finite positive number. Received: radius={radius}")
    cosine = ops.cast(cosine, "float32")
    kappa = ops.cast(kappa, "float32")
    loss = -kappa * cosine - log_vmf_normalizer(kappa, dim)
    if authors_constant:
        loss = loss + dim * math.log(radius)
    return loss
