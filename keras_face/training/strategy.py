"""Distribution: one `tf.distribute` strategy for one GPU, several GPUs or several machines.

`model.fit` under a strategy takes datasets batched with the *global* batch size; each of
the `num_replicas_in_sync` replicas receives `global_batch // replicas` examples, the
losses are averaged over the global batch, and the gradients are all-reduced. Build the
model and the optimizer inside `strategy.scope()`.

- `get_strategy("auto")`: `MultiWorkerMirroredStrategy` when `TF_CONFIG` names more than
  one task, `MirroredStrategy` over the visible GPUs when there are several (or over the
  logical CPUs made by `configure_cpu_replicas`), the default strategy otherwise (one GPU
  or the CPU).
- `configure_cpu_replicas(n)`: split the CPU into `n` logical devices, so that the
  multi-replica code path (and a `MirroredStrategy`) can be run and tested on a laptop.
"""

import json
import os

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def configure_cpu_replicas(count):
    """Split the (first) physical CPU into `count` logical devices.

    Must run before TensorFlow initialises its runtime (before any tensor is created).

    Args:
        count: int. Number of logical CPU devices, at least 1.

    Example:
        ```python
        keras_face.training.configure_cpu_replicas(2)
        strategy = keras_face.training.get_strategy("mirrored")  # 2 replicas
        ```
    """
    import tensorflow as tf

    if isinstance(count, bool) or int(count) != count or count < 1:
        raise ValueError(f"count must be a positive integer. Received: count={count!r}")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == int(count):
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(count)
        )
    except RuntimeError as error:
        raise RuntimeError(
            "The CPU can only be split into logical devices before TensorFlow is "
            "initialised: call configure_cpu_replicas first thing in the process. "
            f"Received: count={count}"
        ) from error


def cluster_size(tf_config=None):
    """Number of tasks (chief + workers) in a `TF_CONFIG` cluster, 1 without one.

    Args:
        tf_config: str or dict. Defaults to the `TF_CONFIG` environment variable.
    """
    if tf_config is None:
        tf_config = os.environ.get("TF_CONFIG", "")
    if not tf_config:
        return 1
    if isinstance(tf_config, str):
        try:
            tf_config = json.loads(tf_config)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"TF_CONFIG is not valid JSON ({error.msg}). Received: TF_CONFIG={tf_config!r}"
            ) from None
    cluster = tf_config.get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")) or 1


def get_strategy(name="auto", devices=None):
    """Pick the `tf.distribute` strategy for this machine (or cluster).

    Args:
        name: str. `"auto"` (see the module docstring), `"default"` (no distribution),
            `"mirrored"` (`MirroredStrategy` over `devices`, or over all GPUs, or over the
            logical CPUs when there is no GPU) or `"multi_worker"`
            (`MultiWorkerMirroredStrategy` from `TF_CONFIG`). Defaults to `"auto"`.
        devices: list of str. Devices of a `"mirrored"` strategy. Defaults to `None`.

    Returns:
        A `tf.distribute.Strategy`.

    Example:
        ```python
        strategy = keras_face.training.get_strategy()
        with strategy.scope():
            model = ...
        ```
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}. Received: strategy={name!r}")
    if name == "auto":
        if cluster_size() > 1:
            name = "multi_worker"
        elif (
            devices
            or len(tf.config.list_logical_devices("GPU")) > 1
            or len(tf.config.list_logical_devices("CPU")) > 1  # configure_cpu_replicas
        ):
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        if cluster_size() < 2:
            raise ValueError(
                "The multi_worker strategy needs a TF_CONFIG environment variable naming "
                "at least two tasks (see docs/training.md). "
                f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=list(devices))


def check_global_batch_size(global_batch_size, strategy):
    """Return the per-replica batch size; raise if the global batch does not split evenly.

    Args:
        global_batch_size: int. Examples per optimizer step over all replicas.
        strategy: the `tf.distribute.Strategy` (its `num_replicas_in_sync`).

    Returns:
        int. `global_batch_size // num_replicas_in_sync`.
    """
    replicas = int(strategy.num_replicas_in_sync)
    if isinstance(global_batch_size, bool) or int(global_batch_size) != global_batch_size:
        raise ValueError(
            f"batch_size must be an integer. Received: batch_size={global_batch_size!r}"
        )
    global_batch_size = int(global_batch_size)
    if global_batch_size < replicas or global_batch_size % replicas:
        lower = max(replicas, global_batch_size // replicas * replicas)
        upper = (global_batch_size // replicas + 1) * replicas
        raise ValueError(
            f"The global batch size must be a multiple of the {replicas} replicas in sync, "
            "so that every replica gets the same number of examples (set "
            f"training.batch_size to e.g. {lower} or {upper}; it is the global batch, "
            f"{replicas} x the per-replica batch). Received: batch_size={global_batch_size}"
        )
    return global_batch_size // replicas


def distribute_dataset(dataset, strategy):
    """Distribute a dataset batched with the global batch size over the strategy's replicas.

    Sharding across workers is by data (`AutoShardPolicy.DATA`): every worker reads the
    same pipeline and keeps its part of each global batch, which works for in-memory and
    single-file datasets alike. `model.fit` does this itself; use this function for
    custom training loops.

    Args:
        dataset: `tf.data.Dataset` yielding global batches.
        strategy: `tf.distribute.Strategy`.

    Returns:
        A `tf.distribute.DistributedDataset`.
    """
    return strategy.experimental_distribute_dataset(with_data_sharding(dataset))


def with_data_sharding(dataset):
    """The dataset with `AutoShardPolicy.DATA` (shard by element, not by file)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def is_chief(strategy=None):
    """Whether this process writes the run's outputs (always, except non-chief workers).

    Args:
        strategy: `tf.distribute.Strategy`. Defaults to the current strategy.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    cluster = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def task_id(strategy=None):
    """`(task_type, task_id)` of this process in a cluster, `("worker", 0)` without one."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return "worker", 0
    return resolver.task_type, int(resolver.task_id)
