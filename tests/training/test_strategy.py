import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from keras_face import training
from keras_face.training import strategy as strategy_module
from tests.training import training_testing

pytestmark = pytest.mark.tf_only


class Replicas:
    def __init__(self, count):
        self.num_replicas_in_sync = count


def test_check_global_batch_size():
    assert training.check_global_batch_size(32, Replicas(4)) == 8
    assert training.check_global_batch_size(7, Replicas(1)) == 7
    with pytest.raises(ValueError) as error:
        training.check_global_batch_size(30, Replicas(4))
    message = str(error.value)
    assert "multiple of the 4 replicas" in message
    assert "e.g. 28 or 32" in message
    assert message.endswith("Received: batch_size=30")
    with pytest.raises(ValueError, match="e.g. 4 or 4|e.g. 4 or 8"):
        training.check_global_batch_size(2, Replicas(4))


def test_cluster_size():
    assert strategy_module.cluster_size("") == 1
    config = {
        "cluster": {"worker": ["localhost:1", "localhost:2"], "chief": ["localhost:3"]},
        "task": {"type": "worker", "index": 0},
    }
    assert strategy_module.cluster_size(json.dumps(config)) == 3
    assert strategy_module.cluster_size({"cluster": {"worker": ["a:1"]}}) == 1
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        strategy_module.cluster_size("{not json")


def test_get_strategy_on_this_machine(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    default = training.get_strategy("auto")
    if not tf.config.list_logical_devices("GPU"):
        assert default is tf.distribute.get_strategy()
    assert default.num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="Received: strategy='horovod'"):
        training.get_strategy("horovod")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        training.get_strategy("multi_worker")
    assert strategy_module.is_chief(default)
    assert strategy_module.task_id(default) == ("worker", 0)


def test_distribute_dataset_keeps_global_batches():
    import tensorflow as tf

    dataset = tf.data.Dataset.range(12).batch(4)
    distributed = training.distribute_dataset(dataset, training.get_strategy("default"))
    batches = [np.asarray(batch) for batch in distributed]
    assert [len(batch) for batch in batches] == [4, 4, 4]
    policy = (
        training.strategy.with_data_sharding(dataset)
        .options()
        .experimental_distribute.auto_shard_policy
    )
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def _load(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _assert_same_training(reference, other):
    np.testing.assert_allclose(other["losses"], reference["losses"], rtol=1e-5)
    assert int(other["iterations"]) == int(reference["iterations"]) == 5
    np.testing.assert_allclose(other["t"], reference["t"], rtol=1e-5)  # CurricularFace state
    weights = [key for key in reference if key.startswith("w")]
    assert weights == [key for key in other if key.startswith("w")]
    for key in weights:
        np.testing.assert_allclose(other[key], reference[key], rtol=1e-4, atol=2e-5, err_msg=key)


@pytest.fixture(scope="module")
def one_replica(tmp_path_factory):
    path = tmp_path_factory.mktemp("replicas") / "one.npz"
    training_testing.run_script("replica_script.py", 1, path)
    return _load(path)


def test_two_cpu_replicas_match_one(one_replica, tmp_path):
    path = tmp_path / "two.npz"
    training_testing.run_script("replica_script.py", 2, path)
    two = _load(path)
    assert float(one_replica["losses"][0]) > float(one_replica["losses"][-1])  # it learns
    _assert_same_training(one_replica, two)


def test_replicas_keep_one_set_of_batch_norm_statistics(tmp_path):
    # Without synchronized batch norm each replica normalises with its own batch
    # statistics, and Keras keeps the replicas' copies of the moving statistics apart;
    # FaceTrainingModel averages them after every step, so the replicas agree (without
    # it they differ by about 1e-2 after a few steps) and predict under the strategy
    # equals a direct call on one device.
    path = tmp_path / "local.npz"
    training_testing.run_script("replica_script.py", 2, path, "local_bn")
    local = _load(path)
    assert float(local["spread"]) == 0.0
    np.testing.assert_allclose(local["predicted"], local["direct"], rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(local["losses"]))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_two_workers_on_localhost(one_replica, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    outputs = [tmp_path / f"worker{index}.npz" for index in range(2)]
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    os.path.join(training_testing.HERE, "multi_worker_script.py"),
                    str(outputs[index]),
                ],
                env=training_testing.script_environment(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=240)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-4000:]
        assert "worker done" in log
    first, second = _load(outputs[0]), _load(outputs[1])
    _assert_same_training(first, second)
    _assert_same_training(one_replica, first)  # 2 workers x 1 replica == 1 replica
