"""ElasticFace under `tf.distribute.MirroredStrategy` on 2 logical CPU devices.

The random margins are drawn per global-batch row (and ElasticFace+ ranks the global
batch), so 2 replicas train as 1 device on the same global batches, as every other head
(`test_distribution.py`). The work runs in a subprocess (`elastic_mirrored_worker.py`):
TensorFlow's logical devices must be set before it initialises.
"""

import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "elastic_mirrored_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADS = [
    "elasticarcface",
    "elasticcosface",
    "elasticarcface_plus",
    "elasticcosface_plus",
    "elasticarcface_plus_reference_order",
]


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, WORKER], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return {result["head"]: result for result in map(json.loads, lines)}


@pytest.mark.tf_only
@pytest.mark.parametrize("head", HEADS + ["projection"])
def test_two_replicas_train_as_one_device(results, head):
    # After 5 SGD steps: equal up to the order of float32 sums.
    assert results[head]["mirrored"] < 1e-6


@pytest.mark.tf_only
@pytest.mark.parametrize("head", HEADS)
def test_margins_from_the_replicas_own_rows_would_differ(results, head):
    # Each replica drawing (or ranking) for its own rows only, as before: the same seed
    # state on both replicas gives both halves the same margins.
    assert results[head]["local"] > 1e-4


@pytest.mark.tf_only
def test_replica_rows_of_uneven_replicas(results):
    rows = results["uneven_rows"]["rows"]
    assert rows["positions"] == [[5, 0], [5, 3]]
    assert rows["concatenated"] == [[0, 1, 2, 10, 11]] * 2
