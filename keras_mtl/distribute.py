"""Training under ``tf.distribute``: exact losses across replicas, two Keras fixes.

Under a ``tf.distribute`` strategy every replica runs the training step on
its slice of the global batch, and the optimizer **sums** the replicas'
gradients. A replica's loss must therefore be its *share* of the global
loss: the sum over its own examples divided by the *global* denominator
(the global batch size ``m`` for ``normalize="batch"``, the global number
of labelled entries for ``normalize="labeled"``). Summed over replicas the
shares give exactly the single-device formula, however the labelled entries
fall across replicas::

    J = Σ_r  S_r / D,      D = Σ_r D_r   (one cross-replica sum per step)

Terms that every replica computes in full — regularisers, a balancing
strategy's own terms — enter each replica's loss divided by the number of
replicas ``R``, so they count once.

The helpers are identities without a strategy (or with one replica): they
decide at trace time and add no operation to single-device training.

Two Keras 3.15 bugs break ``model.fit`` under
``tf.distribute.MultiWorkerMirroredStrategy`` with more than one worker;
:class:`keras_mtl.MultiTaskModel` works around both (see
:func:`local_build_batch` and :func:`logs_for_reduction`), and
``tests/test_distribute.py`` checks that plain Keras still fails, so that it
says when the workarounds can go.
"""

from __future__ import annotations

import json
import socket

import tensorflow as tf
from keras import ops

__all__ = [
    "cross_replica_sum",
    "in_multi_worker_mode",
    "local_build_batch",
    "local_tf_configs",
    "logs_for_reduction",
    "num_replicas",
    "replica_estimate",
    "replica_share",
]


def num_replicas() -> int:
    """Replicas training in sync under the current strategy (1 without one).

    Example:
        >>> num_replicas()
        1
    """
    return tf.distribute.get_strategy().num_replicas_in_sync


def _replica_context():
    """The replica context when a step runs on several replicas, else ``None``."""
    if num_replicas() == 1:
        return None
    context = tf.distribute.get_replica_context()
    # None in cross-replica context (e.g. a loss called eagerly in scope()).
    return context


def cross_replica_sum(value):
    """Sums ``value`` (a tensor or a list of them) over the replicas.

    Inside a replica of a multi-replica strategy this is an all-reduce; else
    the value is returned unchanged. Use it for denominators (batch size,
    labelled count) and for quantities that must be global (per-task
    gradients of a gradient-based balancing strategy).

    Args:
        value: a float tensor, or a list of them (one all-reduce for all).

    Returns:
        The global sum, of the same structure and shapes, identical on every
        replica.

    Example:
        >>> float(cross_replica_sum(ops.convert_to_tensor(3.0)))
        3.0
    """
    context = _replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_share(value):
    """``value / R``: a term every replica computes in full, counted once.

    The optimizer sums the gradients of all ``R`` replicas, so a term that
    does not depend on the replica's examples (a regulariser, a balancing
    strategy's log-variance term) must enter each replica's loss divided
    by ``R``.

    Example:
        >>> replica_share(2.0)
        2.0
    """
    replicas = num_replicas()
    if replicas == 1:
        return value
    return value * (1.0 / replicas)


def replica_estimate(value, local_batch_size):
    """A replica's share of a global loss, scaled back to the global value.

    Metrics average per replica (weighted by the local batch size ``m_r``)
    and are summed over replicas when read; with the share ``v_r`` of the
    global value ``V``, logging ``v_r · m / m_r`` with weight ``m_r`` adds
    up to exactly ``V`` with weight ``m``, even when the last batch is split
    unevenly.

    Args:
        value: the replica's share, a float tensor of any shape, or a
            structure of them.
        local_batch_size: ``m_r``, the replica's number of examples.

    Returns:
        ``value · m / m_r`` (same structure); ``value`` itself without
        replicas.
    """
    if _replica_context() is None:
        return value
    local = ops.cast(local_batch_size, "float32")
    factor = ops.divide_no_nan(cross_replica_sum(local), local)
    return tf.nest.map_structure(lambda v: v * factor, value)


def in_multi_worker_mode(strategy=None) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` over several workers.

    This is the case in which Keras reduces ``fit``'s logs and the first
    batch with cross-worker collectives (``keras/src/backend/tensorflow/
    trainer.py``, ``_collective_all_reduce_multi_worker``).
    """
    strategy = strategy or tf.distribute.get_strategy()
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def local_build_batch(strategy, iterator):
    """The first batch of an epoch iterator as this worker's local tensors.

    Workaround for Keras 3.15 ``TensorFlowTrainer._maybe_symbolic_build``
    (``keras/src/backend/tensorflow/trainer.py``, lines 713–741): to learn
    the input shapes it calls ``strategy.reduce("MEAN", batch, axis=None)``
    on the whole ``(x, y)`` *structure* of ``PerReplica`` values.
    ``Strategy.reduce`` takes a single value (its source says ``TODO:
    support value being a nest``); ``MultiWorkerMirroredStrategy`` with more
    than one worker then tries to convert the structure to a tensor and
    ``fit`` fails before its first step with ``ValueError: Attempt to convert
    a value (PerReplica:{...}) with an unsupported type``. Only shapes and
    dtypes are needed, so the first local replica's tensors serve.

    Args:
        strategy: the model's distribution strategy.
        iterator: Keras's epoch iterator, as passed to ``_maybe_symbolic_build``.

    Returns:
        The batch with every distributed value replaced by its first local
        component (Keras resets the iterator after building).
    """
    batch = None
    for _, _, data in iterator:
        batch = next(data)
        break

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, batch)


def logs_for_reduction(logs: dict, strategy=None) -> dict:
    """Gives every scalar log a leading axis of 1 under multi-worker training.

    Workaround for Keras 3.15 ``reduce_per_replica``
    (``keras/src/backend/tensorflow/trainer.py``, lines 833–841): under a
    multi-worker ``MultiWorkerMirroredStrategy`` it reduces each value the
    training step returns with ``strategy.reduce("MEAN", v, axis=0)``, which
    fails on the scalar loss and metrics (``ValueError: Invalid reduction
    dimension 0 for input with 0 dimensions``). A value of shape ``(1,)``
    reduces to the mean over replicas, a scalar, as on one worker.

    Args:
        logs: the ``{name: value}`` a train or test step returns.
        strategy: the model's strategy (default: the current one).

    Returns:
        ``logs`` unchanged unless in multi-worker mode; then each scalar
        as shape ``(1,)``.
    """
    if not in_multi_worker_mode(strategy):
        return logs
    return {name: ops.reshape(value, (1,)) if len(ops.shape(value)) == 0 else value
            for name, value in logs.items()}


def local_tf_configs(num_workers: int) -> list[str]:
    """``TF_CONFIG`` values for ``num_workers`` workers on this machine.

    Each worker gets a free localhost port; worker 0 is the chief. For
    trying multi-worker training on one machine (tests, benchmarks); on a
    cluster, list the machines' ``host:port`` instead.

    Args:
        num_workers: number of worker processes, at least 1.

    Returns:
        One JSON string per worker, to set as its ``TF_CONFIG``.

    Example:
        >>> config = json.loads(local_tf_configs(2)[1])
        >>> config["task"], len(config["cluster"]["worker"])
        ({'type': 'worker', 'index': 1}, 2)
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1; got {num_workers}.")
    sockets = [socket.socket() for _ in range(num_workers)]
    try:
        for s in sockets:  # all bound at once, so the ports differ
            s.bind(("localhost", 0))
        workers = [f"localhost:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(num_workers)]
