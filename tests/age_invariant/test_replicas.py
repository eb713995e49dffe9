"""One CPU replica and two agree on fixed global batches, for both issue-13 methods."""

import os

import numpy as np
import pytest

from tests.training import training_testing

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(method, replicas, path):
    training_testing.run_script(os.path.join(HERE, "replica_script.py"), method, replicas, path)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("method", ["age_invariant", "occlusion"])
def test_two_replicas_match_one(method, tmp_path):
    one = _run(method, 1, tmp_path / "one.npz")
    two = _run(method, 2, tmp_path / "two.npz")
    assert np.all(np.isfinite(one["losses"])) and len(one["losses"]) == 4
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    for key in (key for key in one if key.startswith("w")):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=2e-5, err_msg=key)
