"""Sharing architectures: how the trunk's features become per-task features.

Hard parameter sharing — one trunk, task-specific heads — is the default of
:class:`keras_mtl.MultiTaskModel`. The layers here are the alternatives,
passed as ``MultiTaskModel(inputs, features, tasks, sharing=...)``. Each maps
the trunk's features ``(batch, d)`` to per-task features
``(batch, tasks, units)``; the model then applies every task's head to its
own slice (still one fused kernel).

* :class:`SoftSharing` — a tower per task; corresponding tower weights are
  tied by an L2 penalty.
* :class:`CrossStitch` — a tower per task; after each layer, learned
  cross-stitch units mix the towers' activations.
* :class:`MMoE` — shared experts, one softmax gate per task.
* :class:`PLE` — shared and task-specific experts, stacked in levels.

Towers and experts of the same shape are stored as one stacked kernel and
run as one ``einsum``, so ``k`` towers cost one operation, not ``k``.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

__all__ = ["CrossStitch", "MMoE", "PLE", "SharingLayer", "SoftSharing"]


class SharingLayer(keras.layers.Layer):
    """Base class: features ``(batch, d)`` → per-task features ``(batch, T, units)``.

    ``num_tasks`` is set by the model before the layer is called.
    """

    def __init__(self, num_tasks: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks

    def shared_kernels(self) -> list:
        """Kernels every task's loss reaches (for gradient-norm balancing).

        Empty when the layer has none (e.g. independent towers); the model
        then uses the trunk's last kernel.
        """
        return []

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks}


def _check_units(owner: str, units) -> list[int]:
    """Layer widths as a non-empty list of positive ints."""
    widths = [units] if isinstance(units, numbers.Integral) else list(units)
    if not widths or any(int(u) != u or u < 1 for u in widths):
        raise ValueError(f"{owner} needs one or more positive layer widths, e.g. units=(64,); "
                         f"got units={units!r}.")
    return [int(u) for u in widths]


def _stacked_kernel(layer, name, count, fan_in, fan_out):
    return layer.add_weight(shape=(count, fan_in, fan_out), name=name,
                            initializer=keras.initializers.GlorotUniform())


def _stacked_bias(layer, name, count, fan_out):
    return layer.add_weight(shape=(count, fan_out), name=name, initializer="zeros")


class _Towers(SharingLayer):
    """One MLP tower per task, run as stacked einsums."""

    def __init__(self, units=(64,), activation="relu", num_tasks=None, **kwargs):
        super().__init__(num_tasks=num_tasks, **kwargs)
        self.units = _check_units(type(self).__name__, units)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation

    def build(self, input_shape):
        fan_in = input_shape[-1]
        self.kernels, self.biases = [], []
        for i, fan_out in enumerate(self.units):
            self.kernels.append(_stacked_kernel(self, f"kernel_{i}", self.num_tasks, fan_in, fan_out))
            self.biases.append(_stacked_bias(self, f"bias_{i}", self.num_tasks, fan_out))
            fan_in = fan_out

    def _layer(self, i, x):
        """Layer ``i`` of every tower: ``(batch, T, in)`` → ``(batch, T, out)``."""
        return self.activation(ops.einsum("bti,tio->bto", x, self.kernels[i]) + self.biases[i])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tasks, self.units[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self._activation_name}


@keras.saving.register_keras_serializable(package="keras_mtl")
class SoftSharing(_Towers):
    """Soft parameter sharing: a tower per task, weights tied by L2.

    Each task has its own MLP tower on the trunk's features; the penalty
    pulls corresponding weights of the towers together::

        Ω = λ · Σ_layers Σ_t ‖W_t − W̄‖²,   W̄ = mean_t W_t

    (kernels only; ``λ = strength``). It is added to the training loss.

    Args:
        units: widths of the tower layers.
        strength: ``λ``; 0 gives independent towers, large values approach
            hard sharing.
        activation: activation of every tower layer.

    Example:
        >>> layer = SoftSharing(units=2, strength=0.5, num_tasks=2)
        >>> tuple(layer(ops.ones((4, 3))).shape)   # (batch, tasks, units)
        (4, 2, 2)
        >>> _ = layer.kernels[0].assign(ops.stack([ops.zeros((3, 2)), ops.ones((3, 2))]))
        >>> float(ops.convert_to_numpy(layer.penalty()))   # 0.5 · (6 + 6) entries · (1/2)²
        1.5

    References:
        Duong, L., Cohn, T., Bird, S., Cook, P. (2015). Low Resource
        Dependency Parsing: Cross-lingual Parameter Sharing in a Neural
        Network Parser. ACL. Ruder, S. (2017). An Overview of Multi-Task
        Learning in Deep Neural Networks. arXiv:1706.05098.
    """

    def __init__(self, units=(64,), strength=1e-3, activation="relu", num_tasks=None, **kwargs):
        super().__init__(units, activation, num_tasks, **kwargs)
        if strength < 0:
            raise ValueError(f"SoftSharing strength must be ≥ 0; got {strength}.")
        self.strength = float(strength)

    def penalty(self):
        """``Ω`` for the current weights (a scalar tensor)."""
        total = 0.0
        for kernel in self.kernels:
            centred = kernel - ops.mean(kernel, axis=0, keepdims=True)
            total = total + ops.sum(ops.square(centred))
        return self.strength * total

    def call(self, features):
        if self.strength > 0:
            self.add_loss(self.penalty())
        x = ops.repeat(ops.expand_dims(features, 1), self.num_tasks, axis=1)
        for i in range(len(self.units)):
            x = self._layer(i, x)
        return x

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


@keras.saving.register_keras_serializable(package="keras_mtl")
class CrossStitch(_Towers):
    """Cross-stitch networks (Misra et al., 2016).

    A tower per task; after each tower layer a learned ``T × T`` matrix
    ``α`` mixes the towers' activations: ``x̃_t = Σ_s α_ts x_s``. With
    ``α = I`` the towers are separate networks.

    Args:
        units: widths of the tower layers.
        self_weight: initial diagonal of ``α``; the off-diagonal entries start
            at ``(1 − self_weight) / (T − 1)`` so each row sums to 1 (with a
            single task, ``α = [[1]]``).
        activation: activation of every tower layer.

    Example:
        >>> layer = CrossStitch(units=(4,), self_weight=0.8, num_tasks=3)
        >>> tuple(layer(ops.ones((2, 5))).shape)
        (2, 3, 4)
        >>> ops.convert_to_numpy(layer.stitches[0]).astype(float).round(3).tolist()
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]

    References:
        Misra, I., Shrivastava, A., Gupta, A., Hebert, M. (2016).
        Cross-Stitch Networks for Multi-Task Learning. CVPR.
    """

    def __init__(self, units=(64, 64), self_weight=0.9, activation="relu", num_tasks=None, **kwargs):
        super().__init__(units, activation, num_tasks, **kwargs)
        if not 0.0 <= self_weight <= 1.0:
            raise ValueError(f"self_weight must be in [0, 1]; got {self_weight}.")
        self.self_weight = float(self_weight)

    def build(self, input_shape):
        super().build(input_shape)
        t = self.num_tasks
        # A single task has nothing to mix with: α = [[1]] is the plain tower.
        diagonal = self.self_weight if t > 1 else 1.0
        off = (1.0 - self.self_weight) / (t - 1) if t > 1 else 0.0
        initial = ops.eye(t) * (diagonal - off) + off
        self.stitches = [
            self.add_weight(shape=(t, t), name=f"cross_stitch_{i}",
                            initializer=keras.initializers.Constant(ops.convert_to_numpy(initial)))
            for i in range(len(self.units))
        ]

    def call(self, features):
        x = ops.repeat(ops.expand_dims(features, 1), self.num_tasks, axis=1)
        for i in range(len(self.units)):
            x = self._layer(i, x)
            x = ops.einsum("ts,bsu->btu", self.stitches[i], x)
        return x

    def shared_kernels(self):
        # α mixes every tower's last layer into every task.
        return self.kernels[-1:]

    def get_config(self):
        return {**super().get_config(), "self_weight": self.self_weight}


def _experts_forward(layer, features, kernels, biases):
    """Experts ``(batch, d)`` → ``(batch, E, units)`` for stacked expert MLPs."""
    x = ops.repeat(ops.expand_dims(features, 1), kernels[0].shape[0], axis=1)
    for kernel, bias in zip(kernels, biases):
        x = layer.activation(ops.einsum("bei,eio->beo", x, kernel) + bias)
    return x


@keras.saving.register_keras_serializable(package="keras_mtl")
class MMoE(SharingLayer):
    """Multi-gate Mixture-of-Experts (Ma et al., 2018).

    ``E`` shared expert MLPs; each task ``t`` mixes them with its own gate::

        g_t(x) = softmax(W_t x),    f_t(x) = Σ_e g_t(x)_e · expert_e(x)

    Args:
        num_experts: ``E``.
        units: widths of each expert's layers.
        activation: activation of the expert layers.

    The gate weights are available from
    :meth:`keras_mtl.MultiTaskModel.sharing_weights` (``"gates"``).

    Example:
        >>> layer = MMoE(num_experts=4, units=(8, 3), num_tasks=2)
        >>> features = ops.ones((5, 6))
        >>> tuple(layer(features).shape)
        (5, 2, 3)
        >>> _ = layer.gate_kernel.assign(ops.zeros((6, 2, 4)))   # equal logits: uniform gates
        >>> ops.convert_to_numpy(layer.gates(features))[0].astype(float).round(3).tolist()
        [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]

    References:
        Ma, J., Zhao, Z., Yi, X., Chen, J., Hong, L., Chi, E. H. (2018).
        Modeling Task Relationships in Multi-task Learning with Multi-gate
        Mixture-of-Experts. KDD.
    """

    def __init__(self, num_experts=4, units=(64,), activation="relu", num_tasks=None, **kwargs):
        super().__init__(num_tasks=num_tasks, **kwargs)
        if num_experts < 1:
            raise ValueError(f"MMoE needs num_experts ≥ 1; got {num_experts}.")
        self.num_experts = int(num_experts)
        self.units = _check_units("MMoE", units)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation

    def build(self, input_shape):
        fan_in = input_shape[-1]
        self.kernels, self.biases = [], []
        for i, fan_out in enumerate(self.units):
            self.kernels.append(_stacked_kernel(self, f"expert_kernel_{i}", self.num_experts, fan_in, fan_out))
            self.biases.append(_stacked_bias(self, f"expert_bias_{i}", self.num_experts, fan_out))
            fan_in = fan_out
        self.gate_kernel = self.add_weight(shape=(input_shape[-1], self.num_tasks, self.num_experts),
                                           name="gate_kernel", initializer="glorot_uniform")
        self.gate_bias = self.add_weight(shape=(self.num_tasks, self.num_experts), name="gate_bias",
                                         initializer="zeros")

    def shared_kernels(self):
        return self.kernels[-1:]

    def gates(self, features):
        """Gate weights ``(batch, T, E)``; each row sums to 1."""
        return ops.softmax(ops.einsum("bd,dte->bte", features, self.gate_kernel) + self.gate_bias, axis=-1)

    def call(self, features):
        experts = _experts_forward(self, features, self.kernels, self.biases)
        return ops.einsum("bte,beu->btu", self.gates(features), experts)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tasks, self.units[-1])

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "units": self.units,
                "activation": self._activation_name}


@keras.saving.register_keras_serializable(package="keras_mtl")
class PLE(SharingLayer):
    """Progressive Layered Extraction (Tang et al., 2020).

    Each level has ``S`` shared experts and ``P`` experts per task. Task
    ``t``'s gate mixes its own ``P`` experts and the ``S`` shared ones; a
    shared gate (in all but the last level) mixes every expert to feed the
    next level's shared experts. Levels are stacked, so task-specific and
    shared knowledge separate progressively.

    Args:
        num_levels: number of extraction levels.
        num_shared_experts: ``S`` per level.
        num_task_experts: ``P`` per task per level.
        units: width of every expert (one layer each).
        activation: expert activation.

    The last level's gate weights are available from
    :meth:`keras_mtl.MultiTaskModel.sharing_weights` (``"gates"``, over the
    task's own experts then the shared ones).

    Example:
        >>> layer = PLE(num_levels=2, num_shared_experts=2, num_task_experts=1, units=4, num_tasks=3)
        >>> features = ops.ones((5, 6))
        >>> tuple(layer(features).shape)
        (5, 3, 4)
        >>> gates = ops.convert_to_numpy(layer.gates(features))   # own expert, then 2 shared
        >>> gates.shape, bool(abs(gates.sum(axis=-1) - 1).max() < 1e-6)
        ((5, 3, 3), True)

    References:
        Tang, H., Liu, J., Zhao, M., Gong, X. (2020). Progressive Layered
        Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for
        Personalized Recommendations. RecSys.
    """

    def __init__(self, num_levels=2, num_shared_experts=2, num_task_experts=1, units=64,
                 activation="relu", num_tasks=None, **kwargs):
        super().__init__(num_tasks=num_tasks, **kwargs)
        if num_levels < 1 or num_shared_experts < 0 or num_task_experts < 0 or (
                num_shared_experts + num_task_experts) < 1:
            raise ValueError("PLE needs num_levels ≥ 1 and at least one expert per gate.")
        self.num_levels = int(num_levels)
        self.num_shared_experts = int(num_shared_experts)
        self.num_task_experts = int(num_task_experts)
        if isinstance(units, (list, tuple)):
            raise ValueError(f"PLE experts have one layer: units is one width, e.g. 64; got {units!r}.")
        self.units = _check_units("PLE", units)[0]
        self.activation = keras.activations.get(activation)
        self._activation_name = activation

    def build(self, input_shape):
        t, s, p, u = self.num_tasks, self.num_shared_experts, self.num_task_experts, self.units
        fan_in = input_shape[-1]
        self.levels = []
        for level in range(self.num_levels):
            last = level == self.num_levels - 1
            weights = {
                # task experts read their task's input; shared experts the shared input
                "task_kernel": _stacked_kernel(self, f"l{level}_task_kernel", t * p, fan_in, u) if p else None,
                "task_bias": _stacked_bias(self, f"l{level}_task_bias", t * p, u) if p else None,
                "shared_kernel": _stacked_kernel(self, f"l{level}_shared_kernel", s, fan_in, u) if s else None,
                "shared_bias": _stacked_bias(self, f"l{level}_shared_bias", s, u) if s else None,
                "gate_kernel": self.add_weight(shape=(t, fan_in, p + s), name=f"l{level}_gate_kernel",
                                               initializer="glorot_uniform"),
                "gate_bias": self.add_weight(shape=(t, p + s), name=f"l{level}_gate_bias",
                                             initializer="zeros"),
                # The shared gate feeds the next level's shared experts: none without them.
                "shared_gate_kernel": None if last or not s else self.add_weight(
                    shape=(fan_in, t * p + s), name=f"l{level}_shared_gate_kernel",
                    initializer="glorot_uniform"),
                "shared_gate_bias": None if last or not s else self.add_weight(
                    shape=(t * p + s,), name=f"l{level}_shared_gate_bias", initializer="zeros"),
            }
            self.levels.append(weights)
            fan_in = u

    def _level(self, w, task_inputs, shared_input):
        """One level: task inputs ``(b, T, d)``, shared input ``(b, d)``."""
        t, s, p, u = self.num_tasks, self.num_shared_experts, self.num_task_experts, self.units
        batch = ops.shape(task_inputs)[0]
        parts = []
        if p:
            own = ops.repeat(task_inputs, p, axis=1)  # (b, T·P, d), task-major
            task_experts = self.activation(ops.einsum("bkd,kdu->bku", own, w["task_kernel"]) + w["task_bias"])
            parts.append(ops.reshape(task_experts, (batch, t, p, u)))
        if s:
            shared = ops.repeat(ops.expand_dims(shared_input, 1), s, axis=1)
            shared_experts = self.activation(ops.einsum("bkd,kdu->bku", shared, w["shared_kernel"])
                                             + w["shared_bias"])
            parts.append(ops.repeat(ops.expand_dims(shared_experts, 1), t, axis=1))
        pool = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=2)  # (b, T, P+S, u)
        gates = ops.softmax(ops.einsum("btd,tde->bte", task_inputs, w["gate_kernel"]) + w["gate_bias"], axis=-1)
        task_out = ops.einsum("bte,bteu->btu", gates, pool)
        shared_out = None
        if w["shared_gate_kernel"] is not None:
            everything = []
            if p:
                everything.append(ops.reshape(task_experts, (batch, t * p, u)))
            if s:
                everything.append(shared_experts)
            everything = everything[0] if len(everything) == 1 else ops.concatenate(everything, axis=1)
            shared_gate = ops.softmax(ops.matmul(shared_input, w["shared_gate_kernel"]) + w["shared_gate_bias"])
            shared_out = ops.einsum("be,beu->bu", shared_gate, everything)
        return task_out, shared_out, gates

    def _forward(self, features):
        task_inputs = ops.repeat(ops.expand_dims(features, 1), self.num_tasks, axis=1)
        shared = features
        gates = None
        for w in self.levels:
            task_inputs, shared, gates = self._level(w, task_inputs, shared)
        return task_inputs, gates

    def shared_kernels(self):
        return [] if not self.num_shared_experts else [self.levels[-1]["shared_kernel"]]

    def gates(self, features):
        """The last level's task gate weights ``(batch, T, P + S)``."""
        return self._forward(features)[1]

    def call(self, features):
        return self._forward(features)[0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tasks, self.units)

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels,
                "num_shared_experts": self.num_shared_experts,
                "num_task_experts": self.num_task_experts, "units": self.units,
                "activation": self._activation_name}
