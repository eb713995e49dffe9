"""Pinned SHA-256 digests of the synthetic identity set: the images must stay bit-identical.

Every case renders a small set with `keras_face.data.synthetic` and hashes its images,
labels, quality levels, identities, landmarks and sampled parameters (or the pairs). The
digests were computed with the single-module generator (`keras_face/data/synthetic.py` at
commit 82b8a65) before it became a package, so a refactor of the generator that changes a
single pixel, label, quality level or random draw fails here.

The images go through NumPy float32 arithmetic, BLAS matrix products and Pillow's JPEG
codec, so the digests are those of this environment (NumPy 2, OpenBLAS, libjpeg-turbo on
x86-64). If only the environment changed (not the code), print the new digests with
`python -m tests.data.test_synthetic_hashes` and check that the code is unchanged before
updating them.
"""

import hashlib

import numpy as np
import pytest

from keras_face.data.synthetic import render_faces
from keras_face.data.synthetic import sample_identity_parameters
from keras_face.data.synthetic import sample_image_parameters
from keras_face.data.synthetic import synthetic_faces
from keras_face.data.synthetic import synthetic_pairs


def digest(*arrays):
    """SHA-256 over the dtype, shape and bytes of each array, in order."""
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype.str}{array.shape}".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


# Parameters added after the digests were pinned (they change no image: the two colours
# an occluder can take, kept so that `with_occlusion` can force one). They are drawn from
# the stream's existing uniforms; `test_added_parameters_are_the_drawn_colours` checks them.
ADDED_PARAMETERS = ("mask_colour", "occluder_colour")


def parameters_digest(parameters):
    """Digest of a parameter dict (names sorted; the parameters added later left out)."""
    names = sorted(name for name in parameters if name not in ADDED_PARAMETERS)
    return digest(np.array(names), *(np.asarray(parameters[name]) for name in names))


def faces_digests(faces):
    return {
        "images": digest(faces.images),
        "labels": digest(faces.labels, faces.identities),
        "quality": digest(faces.quality),
        "landmarks": digest(faces.landmarks),
        "parameters": digest(
            np.array([parameters_digest(faces.identity_parameters)]),
            np.array([parameters_digest(faces.image_parameters)]),
        ),
    }


# Every quality mode of `sample_quality` (realistic, uniform, None, a float, a range, one
# value per image), at 32, 64, 112 and a rectangular size, with JPEG on and off.
FACE_CASES = {
    "32_realistic_jpeg": dict(num_identities=3, images_per_identity=4, seed=5, image_size=32),
    "32_realistic_nojpeg": dict(
        num_identities=3, images_per_identity=4, seed=5, image_size=32, jpeg=False
    ),
    "32_pristine_no_nuisance": dict(
        num_identities=3, images_per_identity=2, seed=1, image_size=32, quality=None, nuisance=0.0
    ),
    "64_uniform_jpeg": dict(
        num_identities=3, images_per_identity=4, seed=2, image_size=64, quality="uniform"
    ),
    "64_uniform_nojpeg": dict(
        num_identities=3,
        images_per_identity=4,
        seed=2,
        image_size=64,
        quality="uniform",
        jpeg=False,
    ),
    "64_range_offset": dict(
        num_identities=2,
        images_per_identity=3,
        seed=9,
        image_size=64,
        quality=(0.2, 0.9),
        identity_offset=10**6,
    ),
    "112_pristine": dict(num_identities=2, images_per_identity=3, seed=0, quality=None),
    "112_constant_jpeg": dict(num_identities=2, images_per_identity=3, seed=3, quality=0.6),
    "112_constant_nojpeg": dict(
        num_identities=2, images_per_identity=3, seed=3, quality=0.6, jpeg=False
    ),
    "112_realistic_strong_nuisance": dict(
        num_identities=2, images_per_identity=4, seed=4, nuisance=2.0
    ),
    "96x80_per_image_jpeg": dict(
        num_identities=2,
        images_per_identity=3,
        seed=6,
        image_size=(96, 80),
        quality=np.linspace(0.0, 1.0, 6),
    ),
    "96x80_per_image_nojpeg": dict(
        num_identities=2,
        images_per_identity=3,
        seed=6,
        image_size=(96, 80),
        quality=np.linspace(0.0, 1.0, 6),
        jpeg=False,
    ),
}

EXPECTED_FACES = {
    "112_constant_jpeg": {
        "images": "3872666ebd0f38f68a550dff10c3365dfd2e80148546880833326057c9078e44",
        "labels": "3f5b494a770ae696a126a0ce225efbc323d18eb601acd33b9688db4b767f13de",
        "quality": "59fde58496d3782beefd7e03b722e395f2f65dfbdd1f926234d21c27ac56766e",
        "landmarks": "324f9ab3c86b0810a02b4fb99d9bd79ba0abcb2172f0443afc60b24f08373a39",
        "parameters": "c9e368850a8db711de23099d6cc325e23d5391e2789d5de8fe7eac4af951453f",
    },
    "112_constant_nojpeg": {
        "images": "93ee34459e49cfe878bfeb85269cbfdfc8a348a9cb0fd75c6e7fc43cb48826a3",
        "labels": "3f5b494a770ae696a126a0ce225efbc323d18eb601acd33b9688db4b767f13de",
        "quality": "59fde58496d3782beefd7e03b722e395f2f65dfbdd1f926234d21c27ac56766e",
        "landmarks": "324f9ab3c86b0810a02b4fb99d9bd79ba0abcb2172f0443afc60b24f08373a39",
        "parameters": "c9e368850a8db711de23099d6cc325e23d5391e2789d5de8fe7eac4af951453f",
    },
    "112_pristine": {
        "images": "335136aa3002c0125b7d4e7628e1e28f841e6d3d5506cf5caa1bd60844ae1345",
        "labels": "3f5b494a770ae696a126a0ce225efbc323d18eb601acd33b9688db4b767f13de",
        "quality": "f09d243cca9485d180e744905f4d145741f8a6be30a18214bd140a6c665c5f60",
        "landmarks": "3547f85c61614d954e5547ed716ae42e1e01c6ca60e6cd50943fad6e64528859",
        "parameters": "8a6eff1908af23d1f55e220d3c1d67998bde791bd1516f4e0c36692501964d53",
    },
    "112_realistic_strong_nuisance": {
        "images": "8b9dffe8335a2a4cc9fd0a13cab4739e4a05fe466ff196653b4898b2e04a9386",
        "labels": "8ff8130e9622004b7bfab11d43c269008931dd0b868a5bdf428d4e5cd256ee97",
        "quality": "58ff5988801f93a9a3e4464a4855ca79ae0e4a741aed81bc0a643fb6d65093d6",
        "landmarks": "50ce73ba2419234c20f2e1bce1b012650cb88c3d0b4c5efac7aaab955316055d",
        "parameters": "f1527569b9966018118fbbba2b7634b57a4308931c7611f1bc65f0175ee6ee96",
    },
    "32_pristine_no_nuisance": {
        "images": "28076a1f04329b5a148077f46a84820bbf25f22cf3a2228e3d2a873499d56a37",
        "labels": "359c97bd5c9aae435db306bbf018f61589fc8977b5cd24264b21672221d526d7",
        "quality": "f09d243cca9485d180e744905f4d145741f8a6be30a18214bd140a6c665c5f60",
        "landmarks": "3ae918157fee2d6919b0068f0f2ca51f636a8160ce33c419508525f05e9c54fc",
        "parameters": "05455bf2172ea06456e57c1e77eccb2278ed5bd1cc4ab490528a9a542bf03ac1",
    },
    "32_realistic_jpeg": {
        "images": "6df52bb9c673438efb5d152b4da126abf7164ef9caef82509d49eae2ae84f968",
        "labels": "66e0d6b987af70ddfd1d7c998144ddbf81008be427e40e9298711f8c8e300b78",
        "quality": "7d8da36408a6ddf320c1e17a755ff304d46d7a6ff3291f9a4df333ea01f9d2b3",
        "landmarks": "38c17bb478af881e48b5d3af15f56c01d5e1c3b6cf0d93bcd8d8aff2458e6adc",
        "parameters": "51ad1d58d487c35e28806ac9ad6acf8151a63f86f70fcd41d063706be785dbbe",
    },
    "32_realistic_nojpeg": {
        "images": "59d9388d78b4189d31008faa1af4d73cca13aa3ae75c08c15759b89a95feac1a",
        "labels": "66e0d6b987af70ddfd1d7c998144ddbf81008be427e40e9298711f8c8e300b78",
        "quality": "7d8da36408a6ddf320c1e17a755ff304d46d7a6ff3291f9a4df333ea01f9d2b3",
        "landmarks": "38c17bb478af881e48b5d3af15f56c01d5e1c3b6cf0d93bcd8d8aff2458e6adc",
        "parameters": "51ad1d58d487c35e28806ac9ad6acf8151a63f86f70fcd41d063706be785dbbe",
    },
    "64_range_offset": {
        "images": "32642318ff3f26ae7e147d12f638c0a905f33bce9bb2f1214126d15f1f9726eb",
        "labels": "ae9afcd3dc10fb4bf981de27361e2346b959e0bc7c61bab8154c2020bba0bb7d",
        "quality": "15dac7e086df745ea066a53af1f56c11c33c8d11196d83dc6c58f3168b8ea250",
        "landmarks": "9fcab60eb92eaaf08861ca93e295ffc29bbe668cfa6d4ce845e45a3a57350195",
        "parameters": "6e9c7ad2598c6d951ddd27f9e6dff6b48464a92e185b93eadcdc293821799b15",
    },
    "64_uniform_jpeg": {
        "images": "ecdfc01c33fef94d902113911d67be72f543622b31256faad253a408b83f5deb",
        "labels": "66e0d6b987af70ddfd1d7c998144ddbf81008be427e40e9298711f8c8e300b78",
        "quality": "c3356b849abdc0f95b3138098c6d63155aa90ebb90ac72e6e893272f519f5c2e",
        "landmarks": "da0ef46d52358f2e8ea0b163a757b544ac1bf1ebb44501a3834df12139ce44ae",
        "parameters": "5a78be3d71743c51b13cd5245dd6f31e18be2e3b3ac170bf7b9445af6e4fb037",
    },
    "64_uniform_nojpeg": {
        "images": "4eb119e9996addadd75090d941a60967b0d140875dc3ffeb45017cac575947fc",
        "labels": "66e0d6b987af70ddfd1d7c998144ddbf81008be427e40e9298711f8c8e300b78",
        "quality": "c3356b849abdc0f95b3138098c6d63155aa90ebb90ac72e6e893272f519f5c2e",
        "landmarks": "da0ef46d52358f2e8ea0b163a757b544ac1bf1ebb44501a3834df12139ce44ae",
        "parameters": "5a78be3d71743c51b13cd5245dd6f31e18be2e3b3ac170bf7b9445af6e4fb037",
    },
    "96x80_per_image_jpeg": {
        "images": "a77d8da455258b5dbf5c25499e35bc6c4b5b623b0863080514999a1e126b121e",
        "labels": "3f5b494a770ae696a126a0ce225efbc323d18eb601acd33b9688db4b767f13de",
        "quality": "9b431d2d1c8d8161a588c5c6dd0c8555f9d89c73a5810f7c05afb8f3d0ab4289",
        "landmarks": "74899a91956c57773579576139b626822c92e0788f4eb860557ee0575ab5de9b",
        "parameters": "326182efd926019d95ea3694a76773bf626eb0772b65d94a71bf6d393ea59b1e",
    },
    "96x80_per_image_nojpeg": {
        "images": "13c88db09adffbbfdc555f5cc7fdbc157eace68ecc706c77a111d23364f50bf3",
        "labels": "3f5b494a770ae696a126a0ce225efbc323d18eb601acd33b9688db4b767f13de",
        "quality": "9b431d2d1c8d8161a588c5c6dd0c8555f9d89c73a5810f7c05afb8f3d0ab4289",
        "landmarks": "74899a91956c57773579576139b626822c92e0788f4eb860557ee0575ab5de9b",
        "parameters": "326182efd926019d95ea3694a76773bf626eb0772b65d94a71bf6d393ea59b1e",
    },
}

EXPECTED_OTHER = {
    "with_quality": "b1017d25a4b2b24f1ad58f60d6d536b0db0a49d82b900b05d5420b48f69aabfe",
    "pairs": "941c07bc8e372ec000cb0efffc9c0624854345574268758224f93dc85223ebcf",
    "pairs_held_out": "81168d26cf851a55a49247e84668a70be4de633afd7087704aa5b0bbc4dd94ac",
    "render_faces": "6e3b7689308db9a67f56a91b5a29fb5d9dfa4465e49eac7b8359611202536a1d",
}


@pytest.mark.parametrize("case", sorted(FACE_CASES))
def test_synthetic_faces_are_bit_identical(case):
    faces = synthetic_faces(**FACE_CASES[case], num_workers=1)
    assert faces_digests(faces) == EXPECTED_FACES[case]


def other_digests():
    """Digests of the re-rendering, pair and direct-rendering paths."""
    faces = synthetic_faces(3, 3, seed=8, image_size=48, quality="uniform", num_workers=1)
    ladder = faces.with_quality(np.linspace(0.0, 1.0, 5), indices=[4] * 5)
    pair_images, issame = synthetic_pairs(faces, 20, seed=3)
    held_out_images, held_out_issame = synthetic_pairs(
        4, 12, seed=5, images_per_identity=3, image_size=32, num_workers=1
    )
    identity = sample_identity_parameters([0, 7], seed=2)
    nuisance = sample_image_parameters([0, 7], 1, seed=2)
    direct_images, direct_landmarks = render_faces(identity, nuisance, [0.0, 0.7], image_size=40)
    return {
        "with_quality": digest(ladder.images, ladder.quality, ladder.labels, ladder.landmarks),
        "pairs": digest(pair_images, issame),
        "pairs_held_out": digest(held_out_images, held_out_issame),
        "render_faces": digest(direct_images, direct_landmarks),
    }


def test_rerendering_pairs_and_render_faces_are_bit_identical():
    assert other_digests() == EXPECTED_OTHER


def test_digest_tells_arrays_apart():
    # The digest sees a one-bit change, a dtype change and a shape change.
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    changed = array.copy()
    changed[2, 3] ^= 1
    digests = {
        digest(array),
        digest(changed),
        digest(array.astype(np.int8)),
        digest(array.reshape(4, 3)),
    }
    assert len(digests) == 4


if __name__ == "__main__":
    print("EXPECTED_FACES = {")
    for name in sorted(FACE_CASES):
        values = faces_digests(synthetic_faces(**FACE_CASES[name], num_workers=1))
        print(f"    {name!r}: {{")
        for key, value in values.items():
            print(f"        {key!r}: {value!r},")
        print("    },")
    print("}")
    print("EXPECTED_OTHER = {")
    for key, value in other_digests().items():
        print(f"    {key!r}: {value!r},")
    print("}")


def test_added_parameters_are_the_drawn_colours():
    parameters = sample_image_parameters(np.arange(6), 20, seed=3, nuisance=2.0)
    kind = parameters["occlusion"]
    assert (kind == 1).any() and (kind > 1).any()
    np.testing.assert_array_equal(
        parameters["occlusion_colour"][kind == 1], parameters["mask_colour"][kind == 1]
    )
    np.testing.assert_array_equal(
        parameters["occlusion_colour"][kind != 1], parameters["occluder_colour"][kind != 1]
    )
