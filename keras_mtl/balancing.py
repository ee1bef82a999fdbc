"""Task balancing: how the per-task losses (or gradients) become one update.

A strategy is an object handed to ``model.compile(balancing=...)``. Each
strategy owns its logic; the model only asks it, at every training step, for

* :meth:`Balancer.combine` — the weights of the per-task losses, from which
  the model forms the total loss ``Σ w_i L_i`` (plus the strategy's own
  regulariser, if any);
* :meth:`Balancer.aggregate` — for strategies that look at per-task
  gradients (``gradient_scope != None``), the update of the shared
  parameters from the per-task gradients;
* :meth:`Balancer.end_epoch` — an epoch-level hook (e.g. DWA).

The loss weightings live here; the gradient aggregators (PCGrad, MGDA,
CAGrad, IMTL-G, Aligned-MTL, Nash-MTL, UPGrad, DB-MTL) in
:mod:`keras_mtl.aggregators`, on :class:`GradientAggregator`, and are
importable from here too. Weights that depend on the losses (``1 / L_i``)
are returned under ``stop_gradient``: the gradient treats them as constants.

Every strategy receives ``present``, a boolean per task that is ``False``
when the batch holds no labelled entry of that task: such a task contributes
no gradient, and the strategy makes no weight update for it from that batch.

Strategies keep their state in Keras variables, which the model saves with
its weights, so they survive ``.keras`` files and ``BackupAndRestore``.

Under ``tf.distribute`` the model hands the hooks global values (per-task
losses and gradients summed over replicas), so every replica computes the
same state; state variables are created with
``aggregation="only_first_replica"`` to be assignable from each replica. A
strategy that cannot give every replica the same numbers sets
``distributed_error``, and ``compile`` raises it under a strategy with more
than one replica.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl import distribute as distribute_lib

__all__ = [
    "DBMTL",
    "DWA",
    "FAMO",
    "IMTLG",
    "MGDA",
    "AlignedMTL",
    "Balancer",
    "CAGrad",
    "FixedWeights",
    "GradNorm",
    "GradientAggregator",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "ScaleInvariant",
    "UPGrad",
    "UncertaintyWeighting",
    "get",
    "log_loss_weights",
]


class Balancer(keras.layers.Layer):
    """Base class of task-balancing strategies.

    Subclasses override :meth:`combine` (loss weighting) and/or
    :meth:`aggregate` (gradient manipulation, with ``gradient_scope`` set to
    ``"shared"`` for every shared parameter or ``"last_shared"`` for the last
    shared kernel only).
    """

    gradient_scope: str | None = None
    adaptive = True  # log weight_<task> in History
    # Why the strategy cannot train on several replicas, and what to use instead.
    distributed_error: str | None = None

    def setup(self, task_names, base_weights):
        """Called by ``compile``: the tasks and their fixed loss weights."""
        self.task_names = list(task_names)
        self.num_tasks = len(self.task_names)
        self.base_weights = ops.convert_to_tensor(base_weights, "float32")
        if getattr(self, "_tasks_set_up", None) is None:
            self.build(None)
            self.built = True
            self._tasks_set_up = self.num_tasks
        elif self._tasks_set_up != self.num_tasks:
            raise ValueError(
                f"This {type(self).__name__} was set up for {self._tasks_set_up} tasks; "
                f"create a new one for a model with {self.num_tasks}."
            )

    def combine(self, task_losses, present, training=True):
        """Returns ``(weights, extra)``: the loss weights (T,) and a scalar added to the loss.

        Args:
            task_losses: per-task losses ``(T,)``.
            present: ``(T,)`` bool, whether the batch labels each task.
            training: ``False`` when evaluating; a strategy whose weights are
                random then returns their expectation.
        """
        return self.base_weights, 0.0

    def aggregate(self, task_gradients, weights, present):
        """Combines per-task gradients of the shared parameters.

        Args:
            task_gradients: list over shared variables of tensors ``(T, *var.shape)``,
                the gradient of each task's *weighted* loss.
            weights: the loss weights of this step, ``(T,)``.
            present: ``(T,)`` bool.

        Returns:
            List of gradients, one per shared variable.
        """
        return [ops.sum(g, axis=0) for g in task_gradients]

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        """Hook after the per-task gradients are known (e.g. GradNorm's update)."""

    def end_epoch(self):
        """Hook at the end of every training epoch."""

    def observe_losses(self, task_losses, present):
        """Hook with every step's per-task losses (e.g. for epoch averages)."""

    def get_build_config(self):
        # Variables are created by setup() at compile time, once the tasks are known.
        return None

    # Keras saves a layer's own variables but not the state of its seed
    # generators; without it a reloaded or resumed random strategy would
    # restart (or, unseeded, reseed) its random stream.
    _SEED_KEY = "seed_generator_state_"

    def _own_generators(self) -> list:
        """The strategy's random generators (``_generator``, where it draws)."""
        return [self._generator] if hasattr(self, "_generator") else []

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, generator in enumerate(self._own_generators()):
            store[f"{self._SEED_KEY}{i}"] = generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        own = {k: store[k] for k in keys if not k.startswith(self._SEED_KEY)}
        super().load_own_variables(own)
        for i, generator in enumerate(self._own_generators()):
            key = f"{self._SEED_KEY}{i}"
            if key in keys:
                generator.state.assign(ops.cast(store[key], generator.state.dtype))

    def build_from_config(self, config):
        pass

    def call(self, inputs):  # pragma: no cover - not used as a layer in a graph
        return inputs


@keras.saving.register_keras_serializable(package="keras_mtl")
class FixedWeights(Balancer):
    """Static weights: ``L = Σ_i w_i L_i`` with each task's ``loss_weight``.

    The default, and the formula of plain multi-task learning.

    References:
        Caruana, R. (1997). Multitask Learning. Machine Learning, 28(1),
        41–75.

    Example:
        >>> b = FixedWeights()
        >>> b.setup(["a", "b"], [1.0, 2.0])
        >>> [float(w) for w in b.combine(ops.ones(2), ops.ones(2, "bool"))[0]]
        [1.0, 2.0]
    """

    adaptive = False


@keras.saving.register_keras_serializable(package="keras_mtl")
class UncertaintyWeighting(Balancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    Learns one log-variance ``s_i = log σ_i²`` per task::

        L = Σ_i  exp(−s_i) · w_i L_i / 2  +  s_i / 2

    so the effective weight is ``exp(−s_i) / 2``: a task whose loss stays
    high (a noisier task) gets a larger ``σ_i`` and a smaller weight. A task
    absent from the batch adds neither term, so its ``s_i`` is not updated.

    Args:
        initial_log_variance: starting ``s_i`` (0 gives weight 0.5).

    References:
        Kendall, A., Gal, Y., Cipolla, R. (2018). Multi-Task Learning Using
        Uncertainty to Weigh Losses for Scene Geometry and Semantics. CVPR.
    """

    def __init__(self, initial_log_variance: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_log_variance = float(initial_log_variance)

    def build(self, input_shape):
        self.log_variance = self.add_weight(
            shape=(self.num_tasks,), name="log_variance", trainable=True,
            initializer=keras.initializers.Constant(self.initial_log_variance))

    def combine(self, task_losses, present, training=True):
        mask = ops.cast(present, "float32")
        weights = 0.5 * ops.exp(-self.log_variance) * self.base_weights
        return weights, ops.sum(0.5 * self.log_variance * mask)

    def get_config(self):
        return {**super().get_config(), "initial_log_variance": self.initial_log_variance}


@keras.saving.register_keras_serializable(package="keras_mtl")
class DWA(Balancer):
    """Dynamic Weight Average (Liu, Johns & Davison, 2019).

    Weights follow the rate at which each task's epoch-average loss falls::

        r_i(t−1) = L_i(t−1) / L_i(t−2)
        w_i(t)   = K · exp(r_i(t−1) / T) / Σ_j exp(r_j(t−1) / T)

    with ``K`` the number of tasks; ``w_i = 1`` for the first two epochs.
    Epoch averages count only batches in which the task is labelled; a task
    never labelled in an epoch keeps its previous average, and a task with
    no average yet for ``t−2`` gets the neutral ratio ``r_i = 1``.

    Args:
        temperature: ``T``; larger values give more uniform weights.

    References:
        Liu, S., Johns, E., Davison, A. J. (2019). End-to-End Multi-Task
        Learning with Attention. CVPR.
    """

    def __init__(self, temperature: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DWA temperature must be > 0; got {temperature}.")
        self.temperature = float(temperature)

    def build(self, input_shape):
        shape = (self.num_tasks,)
        new = lambda name, value: self.add_weight(  # noqa: E731
            shape=shape, name=name, trainable=False, initializer=keras.initializers.Constant(value),
            aggregation="only_first_replica")
        self.dynamic_weights = new("dynamic_weights", 1.0)
        self.loss_sum = new("loss_sum", 0.0)
        self.loss_count = new("loss_count", 0.0)
        self.previous = new("previous_epoch_loss", 0.0)      # L(t−1)
        self.before_previous = new("before_previous_epoch_loss", 0.0)  # L(t−2)
        self.epochs_seen = self.add_weight(shape=(), name="epochs_seen", trainable=False,
                                           initializer="zeros", aggregation="only_first_replica")

    def combine(self, task_losses, present, training=True):
        return self.dynamic_weights * self.base_weights, 0.0

    def observe_losses(self, task_losses, present):
        mask = ops.cast(present, "float32")
        # convert_to_tensor: PyTorch's stop_gradient takes tensors only, not arrays.
        self.loss_sum.assign_add(ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32")) * mask)
        self.loss_count.assign_add(mask)

    @staticmethod
    def weights_from_history(previous, before_previous, temperature):
        """The DWA formula: ``K · softmax(L(t−1) / L(t−2) / T)``.

        Args:
            previous: epoch-average losses ``L(t−1)``, shape ``(K,)``.
            before_previous: epoch-average losses ``L(t−2)``, shape ``(K,)``;
                a zero entry (no average yet) gives that task the ratio 1.
            temperature: ``T``.

        Returns:
            The weights ``(K,)``; they sum to ``K``.

        Example:
            >>> w = DWA.weights_from_history(ops.array([1.0, 1.0]), ops.array([2.0, 1.0]), 2.0)
            >>> [round(float(v), 4) for v in w]
            [0.8756, 1.1244]
        """
        previous = ops.convert_to_tensor(previous, "float32")
        before_previous = ops.convert_to_tensor(before_previous, "float32")
        ratio = ops.where(before_previous > 0, ops.divide_no_nan(previous, before_previous), 1.0)
        return previous.shape[0] * ops.softmax(ratio / temperature)

    def end_epoch(self):
        # Everything is computed before the first assignment: on PyTorch a
        # variable's value is its live storage, which assign() overwrites.
        loss_sum, loss_count, previous = (v.value for v in (self.loss_sum, self.loss_count, self.previous))
        average = ops.divide_no_nan(loss_sum, loss_count)
        # A task never labelled this epoch keeps its last average.
        average = ops.where(loss_count > 0, average, previous)
        weights = self.weights_from_history(average, previous, self.temperature)
        self.before_previous.assign(previous)
        self.previous.assign(average)
        self.epochs_seen.assign_add(1.0)
        if float(ops.convert_to_numpy(self.epochs_seen)) >= 2:  # float() fails on a MirroredVariable
            self.dynamic_weights.assign(weights)
        for variable in (self.loss_sum, self.loss_count):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradNorm(Balancer):
    """GradNorm (Chen et al., 2018): equalise weighted gradient norms.

    With ``G_i = ‖∇_W w_i L_i‖`` on the last shared kernel ``W``, the mean
    ``Ḡ``, and the relative inverse training rate
    ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))``, the weights descend
    ``L_grad = Σ_i |G_i − Ḡ · r_i^α|`` (targets held constant)::

        ∂L_grad/∂w_i = sign(G_i − Ḡ r_i^α) · ‖∇_W L_i‖
        w_i ← w_i − η · sign(∂L_grad/∂w_i)

    and are then renormalised so that they sum to the number of tasks. The
    step is normalised (a fixed size ``η`` in the gradient's direction, the
    step Adam takes on a steady gradient) so that it does not depend on the
    scale of the network's gradients: a raw gradient step of
    ``η · ‖∇_W L_i‖`` overshoots and oscillates once the norms exceed
    ``1/η``. Tasks absent from the batch keep their weight for that step
    exactly (the present tasks are renormalised among themselves);
    ``L_i(0)`` is the task's loss the first time it is labelled.

    Args:
        alpha: asymmetry ``α``; higher pulls harder towards slow tasks.
        learning_rate: ``η``, the change of a weight per step.

    References:
        Chen, Z., Badrinarayanan, V., Lee, C.-Y., Rabinovich, A. (2018).
        GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
        Multitask Networks. ICML.
    """

    gradient_scope = "last_shared"

    def __init__(self, alpha: float = 1.5, learning_rate: float = 0.025, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)

    def build(self, input_shape):
        shape = (self.num_tasks,)
        self.task_weights = self.add_weight(shape=shape, name="task_weights", trainable=False,
                                            initializer="ones", aggregation="only_first_replica")
        self.initial_losses = self.add_weight(shape=shape, name="initial_losses", trainable=False,
                                              initializer="zeros", aggregation="only_first_replica")

    def combine(self, task_losses, present, training=True):
        return self.task_weights * self.base_weights, 0.0

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        mask = ops.cast(present, "float32")
        losses = ops.stop_gradient(task_losses)
        task_weights, initial_losses = self.task_weights.value, self.initial_losses.value
        first = ops.logical_and(present, initial_losses <= 0)
        initial_losses = ops.where(first, losses, initial_losses)
        self.initial_losses.assign(initial_losses)
        # ‖∇_W w_i L_i‖ from the gradients of the weighted losses.
        norms = ops.sqrt(sum(ops.sum(ops.reshape(g, (self.num_tasks, -1)) ** 2, axis=1)
                             for g in task_gradients))
        count = ops.maximum(ops.sum(mask), 1.0)
        mean_norm = ops.sum(norms * mask) / count
        ratio = ops.divide_no_nan(losses, initial_losses)
        mean_ratio = ops.sum(ratio * mask) / count
        target = mean_norm * ops.power(ops.divide_no_nan(ratio, mean_ratio), self.alpha)
        # d|G_i − target_i| / dw_i = sign(G_i − target_i) · ‖∇_W L_i‖, with G_i = w_i ‖∇_W L_i‖;
        # the step takes its sign (zero for a task whose gradient is zero).
        unweighted_norm = ops.divide_no_nan(norms, task_weights)
        step = ops.sign(ops.sign(norms - target) * unweighted_norm) * mask
        updated = ops.maximum(task_weights - self.learning_rate * step, 1e-3)
        # Renormalise among the present tasks, which keep their total: the
        # weights keep summing to the number of tasks, and an absent task's
        # weight is left exactly as it was.
        present_total = ops.sum(task_weights * mask)
        updated = ops.where(present, updated * present_total / ops.sum(updated * mask), task_weights)
        # Only proceed when at least two tasks are present: one task has nothing to balance.
        self.task_weights.assign(ops.where(ops.sum(mask) >= 2, updated, task_weights))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate}


@keras.saving.register_keras_serializable(package="keras_mtl")
class RandomLossWeighting(Balancer):
    """Random Loss Weighting, RLW (Lin et al., 2022).

    At every step the weights are drawn afresh::

        λ = softmax(z),  z ~ N(0, I_K),   L = Σ_i K λ_i w_i L_i

    (scaled by ``K`` so that the weights average 1 like fixed weights; when
    evaluating, ``combine(..., training=False)`` returns that expectation,
    the fixed weights, so validation losses are not random). The
    paper shows this simple baseline matches many elaborate strategies; a
    strategy that does not beat it is not balancing anything.

    Args:
        seed: seed of the weight draws.

    References:
        Lin, B., Ye, F., Zhang, Y., Tsang, I. W. (2022). Reasonable
        Effectiveness of Random Weighting: A Litmus Test for Multi-Task
        Learning. Transactions on Machine Learning Research.
    """

    distributed_error = (
        "RandomLossWeighting cannot train under a tf.distribute strategy with several replicas: its "
        "weights come from a keras.random.SeedGenerator, whose state each replica would advance on "
        "its own, giving the replicas different weights. Train it on one device, or use "
        "kmtl.balancing.UncertaintyWeighting(), GradNorm(), DWA() or FixedWeights() under the strategy."
    )

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.last_weights = self.add_weight(shape=(self.num_tasks,), name="last_weights",
                                            trainable=False, initializer="ones")

    def combine(self, task_losses, present, training=True):
        if not training:
            # Evaluation reports the expected loss: E[K · softmax(z)_i] = 1.
            return self.base_weights, 0.0
        z = keras.random.normal((self.num_tasks,), seed=self._generator)
        weights = self.num_tasks * ops.softmax(z)
        self.last_weights.assign(weights)
        return weights * self.base_weights, 0.0

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def log_loss_weights(task_losses, present, base_weights, epsilon=1e-8):
    """Loss weights that train on ``Σ_i w_i log(L_i + ε)``, and the term that makes the total read so.

    The weights ``w_i / (L_i + ε)`` are constants (``stop_gradient``), so
    ``Σ_i (w_i / (L_i + ε)) L_i`` has the gradient of ``Σ_i w_i log(L_i + ε)``;
    the returned extra term (also constant) makes the loss itself equal that
    sum. Losses are the global ones (summed over replicas), so every replica
    gets the same weights.

    Args:
        task_losses: per-task losses ``(T,)`` (this replica's shares).
        present: ``(T,)`` bool; absent tasks get weight 0.
        base_weights: the tasks' loss weights ``(T,)``.
        epsilon: ``ε``.

    Returns:
        ``(weights, extra)`` as :meth:`Balancer.combine` returns them.

    Example:
        >>> w, extra = log_loss_weights(ops.array([0.5, 2.0]), ops.array([True, True]), ops.ones(2), 0.0)
        >>> [float(v) for v in w], round(float(extra + ops.sum(w * ops.array([0.5, 2.0]))), 4)
        ([2.0, 0.5], 0.0)
    """
    losses = ops.stop_gradient(ops.convert_to_tensor(distribute_lib.cross_replica_sum(task_losses), "float32"))
    shifted = losses + epsilon
    safe = ops.where(present, shifted, 1.0)
    weights = ops.where(present, base_weights / safe, 0.0)
    log_total = ops.sum(ops.where(present, base_weights * ops.log(safe), 0.0))
    return weights, log_total - ops.sum(weights * losses)


@keras.saving.register_keras_serializable(package="keras_mtl")
class ScaleInvariant(Balancer):
    """Scale-invariant log loss: minimise ``Σ_i w_i log L_i``.

    ::

        L = Σ_i w_i log(L_i + ε),      ∇L = Σ_i w_i ∇L_i / (L_i + ε)

    Each task's loss is measured relative to its current value, so
    multiplying one task's loss by a constant changes nothing. Equivalently
    the loss weights are ``w_i / (L_i + ε)``, held constant; ``loss`` in the
    logs is
    ``Σ_i w_i log(L_i + ε)`` (negative once losses fall below 1) and
    ``weight_<task>`` is ``w_i / (L_i + ε)``. The cheapest scale-invariant
    baseline (losses only), the loss half of DB-MTL and the
    "scale-invariant" baseline of Navon et al. (2022) and Liu et al. (2023).

    Args:
        epsilon: ``ε``, keeps a zero loss finite.

    References:
        Navon, A., Shamsian, A., Achituve, I., Maron, H., Kawaguchi, K.,
        Chechik, G., Fetaya, E. (2022). Multi-Task Learning as a Bargaining
        Game. ICML.

    Example:
        >>> b = ScaleInvariant(epsilon=0.0)
        >>> b.setup(["a", "b"], [1.0, 1.0])
        >>> weights, extra = b.combine(ops.array([0.5, 4.0]), ops.ones(2, "bool"))
        >>> [float(w) for w in weights]
        [2.0, 0.25]
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def combine(self, task_losses, present, training=True):
        return log_loss_weights(task_losses, present, self.base_weights, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_mtl")
class FAMO(Balancer):
    """Fast Adaptive Multitask Optimization, FAMO (Liu et al., 2023).

    Losses only, ``O(1)`` per step (no per-task gradients). Task logits
    ``ξ`` give weights ``z = softmax(ξ)``, and the model trains on::

        Σ_i z_i log L_i / c,    c = Σ_i z_i / L_i    (c held constant)

    i.e. loss weights ``z_i / (c L_i)``; ``loss`` in the logs is
    ``Σ z_i / c``, the ``z``-weighted harmonic mean of the task losses. After
    each step the logits move towards the tasks whose log-loss fell least::

        δ = J_softmax(ξ)ᵀ (log L_t − log L_{t+1}),   ξ ← Adam(ξ; δ + γ ξ)

    (``δ_j = z_j (Δ_j − Σ_i z_i Δ_i)``, ``Δ`` the decrease of the log-losses;
    Adam with learning rate ``lr`` and the L2 weight decay ``γ``, as the
    authors' code). The paper measures ``L_{t+1}`` by a second forward pass
    on the same batch after the update; here, to keep one pass per step,
    ``L_{t+1}`` is the loss of the task's *next* step, on the next batch in
    which it is labelled. A task absent from a batch keeps its logit, its
    Adam state and its last loss. Loss weights ``w_i`` of the tasks multiply
    ``z_i``. Defaults ``lr = 0.025``, ``γ = 0.001`` are the paper's.

    Args:
        lr: learning rate of the logits.
        gamma: weight decay ``γ`` of the logits.
        epsilon: added to the losses inside the logarithms.

    References:
        Liu, B., Feng, Y., Stone, P., Liu, Q. (2023). FAMO: Fast Adaptive
        Multitask Optimization. NeurIPS.

    Example:
        >>> famo = FAMO()
        >>> famo.setup(["a", "b"], [1.0, 1.0])
        >>> weights, _ = famo.combine(ops.array([1.0, 3.0]), ops.ones(2, "bool"))
        >>> [round(float(w), 3) for w in weights]  # z = (½, ½), c = ½ + ⅙
        [0.75, 0.25]
    """

    _BETA_1, _BETA_2, _ADAM_EPSILON = 0.9, 0.999, 1e-8

    def __init__(self, lr: float = 0.025, gamma: float = 0.001, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.lr = float(lr)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        new = lambda name: self.add_weight(  # noqa: E731
            shape=(self.num_tasks,), name=name, trainable=False, initializer="zeros",
            aggregation="only_first_replica")
        self.logits = new("logits")
        self.previous_log_loss = new("previous_log_loss")
        self.seen = new("seen")  # 1 once the task has a previous loss
        self.adam_m, self.adam_v, self.adam_steps = new("adam_m"), new("adam_v"), new("adam_steps")

    def combine(self, task_losses, present, training=True):
        losses = ops.stop_gradient(ops.convert_to_tensor(distribute_lib.cross_replica_sum(task_losses), "float32"))
        prior = ops.softmax(self.logits.value) * self.base_weights
        inverse = ops.where(present, prior / ops.where(present, losses + self.epsilon, 1.0), 0.0)
        return ops.divide_no_nan(inverse, ops.sum(inverse)), 0.0

    def observe_losses(self, task_losses, present):
        mask = ops.cast(present, "float32")
        log_loss = ops.log(ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32")) + self.epsilon)
        # Everything is read before the first assignment (PyTorch variables are live storage).
        logits, previous, seen = self.logits.value, self.previous_log_loss.value, self.seen.value
        m, v, steps = self.adam_m.value, self.adam_v.value, self.adam_steps.value
        valid = ops.logical_and(present, seen > 0)
        decrease = ops.where(valid, previous - log_loss, 0.0)
        z = ops.softmax(logits)
        gradient = z * (decrease - ops.sum(z * decrease)) + self.gamma * logits
        steps_next = ops.where(valid, steps + 1.0, steps)
        m_next = ops.where(valid, self._BETA_1 * m + (1 - self._BETA_1) * gradient, m)
        v_next = ops.where(valid, self._BETA_2 * v + (1 - self._BETA_2) * gradient * gradient, v)
        count = ops.maximum(steps_next, 1.0)
        m_hat = m_next / (1 - ops.power(self._BETA_1, count))
        v_hat = v_next / (1 - ops.power(self._BETA_2, count))
        step = self.lr * m_hat / (ops.sqrt(v_hat) + self._ADAM_EPSILON)
        self.logits.assign(ops.where(valid, logits - step, logits))
        self.adam_m.assign(m_next)
        self.adam_v.assign(v_next)
        self.adam_steps.assign(steps_next)
        self.previous_log_loss.assign(ops.where(present, log_loss, previous))
        self.seen.assign(ops.maximum(seen, mask))

    def get_config(self):
        return {**super().get_config(), "lr": self.lr, "gamma": self.gamma, "epsilon": self.epsilon}


# The gradient aggregators live in keras_mtl.aggregators (which builds on Balancer).
from keras_mtl.aggregators import (  # noqa: E402
    DBMTL,
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradientAggregator,
    NashMTL,
    PCGrad,
    UPGrad,
)

_STRATEGIES = {cls.__name__: cls for cls in
               (FixedWeights, UncertaintyWeighting, DWA, GradNorm, PCGrad, RandomLossWeighting,
                ScaleInvariant, FAMO, MGDA, CAGrad, IMTLG, AlignedMTL, NashMTL, UPGrad, DBMTL)}


def get(strategy) -> Balancer:
    """A strategy instance from an instance, a class, or ``None`` (fixed weights)."""
    if strategy is None:
        return FixedWeights()
    if isinstance(strategy, type) and issubclass(strategy, Balancer):
        return strategy()
    if isinstance(strategy, dict):
        strategy = keras.saving.deserialize_keras_object(strategy)
    if not isinstance(strategy, Balancer):
        raise ValueError(
            f"balancing={strategy!r} is not a strategy object; pass e.g. "
            f"kmtl.balancing.UncertaintyWeighting(). Available: {sorted(_STRATEGIES)}."
        )
    return strategy
