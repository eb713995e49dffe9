"""Stateful heads under `tf.distribute.MirroredStrategy` on 2 logical CPU devices.

The Contract: the state comes from the whole global batch (all-reduced across
replicas), so 2 replicas reach the state of 1 replica on the same global batches. The
devices are split in a subprocess (`mirrored_worker.py`): TensorFlow's logical devices
must be set before it initialises, which would disturb the other tests.
"""

import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "mirrored_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, WORKER],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return {result["head"]: result for result in map(json.loads, lines)}


@pytest.mark.tf_only
@pytest.mark.parametrize("head", ["sphereface", "curricularface", "magface", "adaface"])
def test_mirrored_state_and_weights_equal_single_device(results, head):
    result = results[head]
    assert sorted(result["mirrored"]) == sorted(result["single"])
    for name, value in result["single"].items():
        assert abs(result["mirrored"][name] - value) <= 1e-6 * max(1.0, abs(value)), name
    # Weights after 5 SGD steps: equal up to the order of float32 sums.
    assert result["max_weight_difference"] < 1e-5
    if head == "sphereface":
        assert result["single"] == {"iteration": 5.0}  # one count per global step


@pytest.mark.tf_only
@pytest.mark.parametrize("head", ["curricularface", "adaface"])
def test_per_replica_statistics_would_differ(results, head):
    # Without the cross-replica sum each replica would keep its own half batch's
    # statistic: far from the single-device state (the comparison above can fail).
    result = results[head]
    differences = [abs(result["local"][name] - value) for name, value in result["single"].items()]
    assert max(differences) > 1e-3
