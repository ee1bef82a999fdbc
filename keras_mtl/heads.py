"""Fused task heads: one kernel for all tasks, one named output per task.

Naming 1,000 tasks must not cost 1,000 layers and 1,000 losses in the
training step. All heads share one ``Dense`` kernel whose output columns are
laid out by label group (:func:`keras_mtl.tasks.label_groups`: every binary
and multilabel unit first, then the regression units, other elementwise
groups, then one softmax block per categorical task). One
:class:`TaskOutputs` layer turns the fused logits into one named output per
task, for one task or a thousand; the model's forward pass returns those
outputs and, beside them, the fused logits (:data:`FUSED_LOGITS`), from which
:class:`FusedTaskLoss` computes every group's loss in a handful of tensor
operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_mtl import metrics as metrics_lib
from keras_mtl.losses import check_normalize, global_counts
from keras_mtl.tasks import Task, label_groups, label_width, packed_key

# The key of the fused logits among the forward pass's outputs, beside one key per task.
# Task names are identifiers (keras_mtl.tasks), so this key is never a task's.
FUSED_LOGITS = "kmtl:fused_logits"

__all__ = [
    "FUSED_LOGITS",
    "FusedTaskLoss",
    "HeadLayout",
    "LabelGroup",
    "TaskHeads",
    "TaskMetrics",
    "TaskOutput",
    "TaskOutputs",
    "forward_outputs",
    "stack_groups",
    "standardized_labels",
    "stack_weights",
]


@dataclass(frozen=True)
class _Block:
    task: Task
    start: int
    stop: int


class LabelGroup:
    """Tasks whose labels form one matrix and whose loss is computed together.

    Attributes:
        tasks: the tasks, in column order.
        start, stop: the group's columns in the fused logits.
        elementwise: one loss term per unit (the label matrix is
            ``(batch, units)``); otherwise one class index per task and
            example (``(batch, number of tasks)``), one loss per task block.
        label_columns: ``{task name: (lo, hi)}``, the task's columns in the
            group's label matrix.
        key: the name the group's label matrix travels under in a packed
            batch (:func:`keras_mtl.data.from_arrays`).
    """

    def __init__(self, tasks, start):
        self.tasks = list(tasks)
        self.kind = self.tasks[0].kind
        self.elementwise = self.kind.elementwise
        self.start = start
        self.stop = start + sum(t.units for t in self.tasks)
        self.label_columns = {}
        column = 0
        for task in self.tasks:
            width = label_width(task)
            self.label_columns[task.name] = (column, column + width)
            column += width
        self.width = column
        self.key = packed_key(self.tasks)
        # Column → task (within the group), for per-task sums of elementwise terms.
        self.segments = np.repeat(np.arange(len(self.tasks)), [t.units for t in self.tasks]).astype("int32")
        self.single_units = len(self.segments) == len(self.tasks)
        weighted = [t for t in self.tasks if t.class_weight_table is not None]
        self.class_weight_tables = None
        if weighted:
            # Tasks without class weights weigh every class 1.
            self.class_weight_tables = [
                t.class_weight_table if t.class_weight_table is not None
                else t.kind.class_weight_table(t, None) for t in self.tasks]

    def logits_of(self, logits):
        """The group's columns of the fused logits ``(batch, units)``: no slice when they are all of them."""
        if self.start == 0 and self.stop == logits.shape[-1]:
            return logits  # the usual model of one kind of task: one operation less per step
        return logits[:, self.start:self.stop]

    def labels_of(self, matrix, task):
        """``task``'s labels, sliced from the group's label matrix."""
        lo, hi = self.label_columns[task.name]
        if hi - lo == 1 and len(task.kind.label_shape(task, 1)) == 1:
            return matrix[:, lo]
        return matrix[:, lo:hi]


class HeadLayout:
    """Where each task's units sit in the fused logits, by label group.

    The columns hold the groups of :func:`keras_mtl.tasks.label_groups` one
    after the other: every binary and multilabel unit first, then the
    regression units, then other elementwise groups, then one block per
    categorical task.

    Example:
        >>> layout = HeadLayout([Task("weather", kind="categorical", num_classes=3),
        ...                      Task("car"), Task("distance", kind="regression")])
        >>> [(name, b.start, b.stop) for name, b in layout.blocks.items()]
        [('car', 0, 1), ('distance', 1, 2), ('weather', 2, 5)]
        >>> [group.key for group in layout.groups]
        ['labels:car:1', 'labels:distance:1', 'labels:weather:1']
    """

    def __init__(self, tasks: list[Task]):
        self.tasks = list(tasks)
        self.groups: list[LabelGroup] = []
        column = 0
        for group_tasks in label_groups(self.tasks):
            group = LabelGroup(group_tasks, column)
            self.groups.append(group)
            column = group.stop
        self.units = column
        self.blocks: dict[str, _Block] = {}
        ordered = [t for g in self.groups for t in g.tasks]
        column = 0
        for task in ordered:
            self.blocks[task.name] = _Block(task, column, column + task.units)
            column += task.units
        # Task index (in the user's order) of every column.
        index = {t.name: i for i, t in enumerate(self.tasks)}
        self.column_tasks = [index[t.name] for t in ordered for _ in range(t.units)]
        # Position of every task's loss in the group order → user order.
        position = {t.name: i for i, t in enumerate(ordered)}
        self.to_user_order = np.array([position[t.name] for t in self.tasks], dtype="int32")
        self._in_order = bool(np.all(self.to_user_order == np.arange(len(self.tasks))))
        self.group_of = {t.name: g for g in self.groups for t in g.tasks}

    def in_user_order(self, per_group: list):
        """One vector over the tasks in the user's order, from one vector per group (in group order).

        Example:
            >>> layout = HeadLayout([Task("distance", kind="regression"), Task("car")])
            >>> vectors = [ops.convert_to_tensor([1.0]), ops.convert_to_tensor([2.0])]  # car, distance
            >>> ops.convert_to_numpy(layout.in_user_order(vectors)).tolist()
            [2.0, 1.0]
        """
        # The usual model (one group, or groups in the tasks' order) needs neither op.
        joined = per_group[0] if len(per_group) == 1 else ops.concatenate(per_group, axis=0)
        return joined if self._in_order else ops.take(joined, self.to_user_order, axis=0)

    def block(self, name: str) -> _Block:
        return self.blocks[name]


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskHeads(keras.layers.Layer):
    """The fused kernel of all task heads: features → logits of every task.

    With shared features ``(batch, d)`` this is one ``Dense(units)``. With
    per-task features ``(batch, T, d)`` (soft sharing, experts) each task's
    head reads its own slice: one stacked kernel ``(T, d, max units)``, one
    ``einsum``, and a gather into the layout's column order.

    Args:
        units: total number of output units over all tasks.
        task_units: units of each task in task order (per-task mode only).
        column_tasks: task index of every output column, in column order
            (per-task mode only).
        kernel_initializer, bias_initializer, kernel_regularizer: as for
            ``keras.layers.Dense``.
    """

    def __init__(self, units, task_units=None, column_tasks=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.task_units = None if task_units is None else [int(u) for u in task_units]
        self.column_tasks = None if column_tasks is None else [int(t) for t in column_tasks]
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        if self.task_units is None:
            # The layer's dtype policy passed on: a mixed policy computes in float16 here too.
            self.dense = keras.layers.Dense(
                self.units, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                kernel_regularizer=kernel_regularizer, dtype=self.dtype_policy, name="fused_kernel")

    def build(self, input_shape):
        if self.task_units is None:
            self.dense.build(input_shape)
            return
        num_tasks, width = len(self.task_units), max(self.task_units)
        self.kernel = self.add_weight(shape=(num_tasks, input_shape[-1], width), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(shape=(num_tasks, width), name="bias",
                                    initializer=self.bias_initializer)
        # Column c of the output is unit j of task t: flat index t·width + j.
        seen = [0] * num_tasks
        index = []
        for t in self.column_tasks:
            index.append(t * width + seen[t])
            seen[t] += 1
        self._gather = np.array(index, dtype="int32")

    def call(self, features):
        if self.task_units is None:
            if self.dense.quantization_mode is not None:
                return self.dense(features)  # Keras runs a quantised kernel from Layer.__call__
            # The Dense's own computation (LoRA included), under this layer's call, which has
            # cast the inputs and set the same dtype policy: a second Layer.__call__ would cost
            # eager PyTorch about 50 µs per step for nothing.
            return self.dense.call(features)
        per_task = ops.einsum("btd,tdu->btu", features, self.kernel) + self.bias
        flat = ops.reshape(per_task, (ops.shape(per_task)[0], -1))
        return ops.take(flat, self._gather, axis=1)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (batch, self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            task_units=self.task_units,
            column_tasks=self.column_tasks,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskOutput(keras.layers.Layer):
    """One task's named output: its columns of the fused logits, activated.

    The output layer of up to 16 tasks in files written by keras_mtl 0.1.0:
    kept so that those files deserialise. ``MultiTaskModel.from_config``
    replaces these layers by one :class:`TaskOutputs`.

    Args:
        start, stop: the task's columns in the fused logits.
        activation: ``"sigmoid"``, ``"softmax"`` or ``"linear"``.
    """

    def __init__(self, start, stop, activation, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)

    def call(self, logits):
        # float32 outputs even under a mixed-precision policy.
        return ops.cast(self._activation_fn(logits[:, self.start:self.stop]), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start)

    def compute_output_spec(self, logits):
        return keras.KerasTensor((logits.shape[0], self.stop - self.start), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(start=self.start, stop=self.stop, activation=self.activation)
        return config


def _split_points(widths: list[int]):
    """What ``ops.split`` takes to cut a block into outputs of ``widths`` columns.

    Equal widths (e.g. 1,000 binary tasks) as a number of sections: a list of
    999 split points costs PyTorch's eager step ten times more in Keras's
    conversion.
    """
    return len(widths) if len(set(widths)) == 1 else np.cumsum(widths)[:-1].tolist()


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskOutputs(keras.layers.Layer):
    """Every task's named output from the fused logits, in one layer.

    Tasks whose columns are contiguous and share an elementwise activation
    are activated together and split apart in one operation, so 1,000
    binary tasks cost one slice, one sigmoid and one split, not 1,000 of
    each; a task with a whole-block activation (softmax) gets its own.

    A standardised regression task's logits are its standardised
    prediction: the layer maps them back to the user's units with the
    statistics it holds (``target_mean``, ``target_scale``: one entry per
    fused column, 0 and 1 where nothing is standardised), which
    :meth:`keras_mtl.MultiTaskModel.adapt_targets` sets.

    Args:
        outputs: one entry per task, ``[name, start, stop, activation,
            elementwise, standardize]``: the task's columns of the fused
            logits, its activation, whether that activation acts on each
            unit alone, and whether its targets are standardised (absent
            in files of keras_mtl 0.1.0: ``False``).

    Returns (when called): ``{task name: output}``, float32 even under a
    mixed-precision policy.

    Example:
        >>> layer = TaskOutputs([["car", 0, 1, "sigmoid", True], ["bike", 1, 2, "sigmoid", True],
        ...                      ["weather", 2, 5, "softmax", False]])
        >>> out = layer(ops.zeros((2, 5)))
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'car': (2, 1), 'bike': (2, 1), 'weather': (2, 3)}
        >>> [round(float(v), 4) for v in ops.convert_to_numpy(out["weather"])[0]]
        [0.3333, 0.3333, 0.3333]
    """

    def __init__(self, outputs, **kwargs):
        super().__init__(**kwargs)
        self.outputs = [[str(o[0]), int(o[1]), int(o[2]), str(o[3]), bool(o[4]), bool(o[5]) if len(o) > 5 else False]
                        for o in outputs]
        self.units = max(o[2] for o in self.outputs)
        self._runs = []  # [activation, start, stop, [(name, width)], elementwise, standardized]
        for name, start, stop, activation, elementwise, standardize in sorted(self.outputs, key=lambda o: o[1]):
            run = self._runs[-1] if self._runs else None
            if (run is not None and elementwise and run[4] and run[0] == activation and run[2] == start):
                run[2] = stop
                run[3].append((name, stop - start))
                run[5] = run[5] or standardize
            else:
                self._runs.append([activation, start, stop, [(name, stop - start)], elementwise, standardize])
        self._activations = {a: keras.activations.get(a) for a in {o[3] for o in self.outputs}}
        # Fixed by the outputs, read at every step: each run's split (None: one output), the
        # outputs' names in the order call() makes them and in task order, the standardised tasks.
        self._split_points = [None if len(run[3]) == 1 else _split_points([width for _, width in run[3]])
                              for run in self._runs]
        self._names_in_runs = [name for run in self._runs for name, _ in run[3]]
        self._task_order = [o[0] for o in self.outputs]
        self._standardized = tuple(o[0] for o in self.outputs if o[5])

    def build(self, input_shape=None):
        # float32 whatever the policy: targets in grams or dollars need its precision.
        self.target_mean = self.add_weight(shape=(self.units,), initializer="zeros", trainable=False,
                                           dtype="float32", autocast=False, name="target_mean")
        self.target_scale = self.add_weight(shape=(self.units,), initializer="ones", trainable=False,
                                            dtype="float32", autocast=False, name="target_scale")

    def call(self, logits):
        values = []
        for (activation, start, stop, _, _, standardized), points in zip(self._runs, self._split_points):
            block = ops.cast(self._activations[activation](logits[:, start:stop]), "float32")
            if standardized:
                block = block * self.target_scale[start:stop] + self.target_mean[start:stop]
            if points is None:
                values.append(block)
            else:
                values.extend(ops.split(block, points, axis=1))
        # dict(zip(...)) builds 1,000 entries at C speed (PyTorch runs this at every step).
        found = dict(zip(self._names_in_runs, values))
        if self._names_in_runs == self._task_order:
            return found
        return {name: found[name] for name in self._task_order}  # in task order

    def compute_output_spec(self, logits):
        return {o[0]: keras.KerasTensor((logits.shape[0], o[2] - o[1]), dtype="float32") for o in self.outputs}

    @property
    def standardized(self) -> list[str]:
        """The tasks whose targets are standardised."""
        return list(self._standardized)

    def load_own_variables(self, store):
        if len(store.keys()) == 0:
            return  # a file from before standardisation: nothing was standardised
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update(outputs=self.outputs)
        return config


def forward_outputs(logits, layout: HeadLayout, name: str = "kmtl_outputs", standardize: bool = True) -> dict:
    """What a multi-task model's forward pass returns: ``{task: output, FUSED_LOGITS: logits}``.

    One :class:`TaskOutputs` layer gives every task's output in user units;
    the fused logits travel beside them, so that the loss and the metrics
    read them from the forward pass's return value.

    Args:
        logits: fused logits ``(batch, layout.units)``, symbolic or eager.
        layout: the model's :class:`HeadLayout`.
        name: the output layer's name.
        standardize: ``False`` learns every target in the user's units,
            whatever the tasks' ``standardize``.

    Example:
        >>> layout = HeadLayout([Task("car"), Task("weather", kind="categorical", num_classes=2)])
        >>> out = forward_outputs(ops.zeros((1, 3)), layout)
        >>> list(out), [float(v) for v in ops.convert_to_numpy(out["weather"])[0]]
        (['car', 'weather', 'kmtl:fused_logits'], [0.5, 0.5])
    """
    spec = [[t.name, layout.block(t.name).start, layout.block(t.name).stop, t.activation, t.kind.elementwise,
             bool(standardize and t.standardize)] for t in layout.tasks]
    return {**TaskOutputs(spec, name=name)(logits), FUSED_LOGITS: logits}


def standardized_labels(group: LabelGroup, labels, targets):
    """A regression group's labels in the units of its logits: ``(y − mean) / scale`` per column.

    ``targets``: ``(mean, scale)`` over the fused columns
    (:class:`TaskOutputs`), or ``None``; other kinds' labels (class indices,
    counts) are returned as they are.
    """
    if targets is None or not group.kind.standardizes:
        return labels
    mean, scale = targets
    return (labels - mean[group.start:group.stop]) / scale[group.start:group.stop]


def _label_columns(y, group: LabelGroup, batch_size, dtype):
    columns = [ops.convert_to_tensor(y[task.name]) for task in group.tasks]
    if all(len(column.shape) == 1 for column in columns):
        # One label per example and task: one stack, one cast (a no-op on float32 labels).
        return ops.cast(ops.stack(columns, axis=1), dtype)
    columns = [ops.reshape(ops.cast(column, dtype), (batch_size, hi - lo))
               for column, (lo, hi) in zip(columns, group.label_columns.values())]
    return columns[0] if len(columns) == 1 else ops.concatenate(columns, axis=1)


def stack_groups(y, layout: HeadLayout, batch_size) -> list:
    """The label matrix of every group, in group order.

    From a packed batch (one matrix per group, under the group's key) the
    matrices are taken as they are; from ``{task: labels}`` each group's
    columns are stacked once per step, shared by the loss and the metrics.
    """
    # Stacked as float32 whatever the kind: NaN, a missing mark of labels that did not
    # come through kmtl.data, would not survive a cast to integers.
    return [y[group.key] if group.key in y else _label_columns(y, group, batch_size, "float32")
            for group in layout.groups]


def stack_weights(sample_weight, tasks, batch_size, dtype="float32", per_unit=True):
    """Per-entry weights ``(batch, units)`` (or ``(batch, tasks)``) from per-example weights."""
    columns = []
    for task in tasks:
        weight = sample_weight[task.name] if isinstance(sample_weight, dict) else sample_weight
        weight = ops.reshape(ops.cast(weight, dtype), (batch_size, 1))
        columns.append(ops.repeat(weight, task.units, axis=1) if per_unit and task.units > 1 else weight)
    return columns[0] if len(columns) == 1 else ops.concatenate(columns, axis=1)


def _group_terms(group: LabelGroup, labels, logits, sample_weight, batch_size):
    """Summed losses and (weighted) labelled counts of a group's tasks, ``(tasks,)`` each."""
    if group.elementwise:
        losses, mask = group.tasks[0].entries(labels, group.logits_of(logits))
        if group.class_weight_tables is not None:
            weights = group.kind.class_weights(labels, np.concatenate(group.class_weight_tables))
            losses, mask = losses * weights, mask * weights
        if sample_weight is not None:
            weights = stack_weights(sample_weight, group.tasks, batch_size)
            losses, mask = losses * weights, mask * weights
        total, count = ops.sum(losses, axis=0), ops.sum(mask, axis=0)
        if not group.single_units:  # multilabel heads: one value per task
            total = ops.segment_sum(total, group.segments, len(group.tasks))
            count = ops.segment_sum(count, group.segments, len(group.tasks))
        return total, count
    totals, counts, column = [], [], group.start
    for j, task in enumerate(group.tasks):
        y = labels[:, j]
        losses, mask = task.entries(y, logits[:, column:column + task.units])
        losses, mask = losses[:, 0], mask[:, 0]
        column += task.units
        if group.class_weight_tables is not None:
            weights = task.kind.class_weights(y, group.class_weight_tables[j])
            losses, mask = losses * weights, mask * weights
        if sample_weight is not None:
            weights = stack_weights(sample_weight, [task], batch_size)[:, 0]
            losses, mask = losses * weights, mask * weights
        totals.append(ops.sum(losses))
        counts.append(ops.sum(mask))
    return ops.stack(totals), ops.stack(counts)


class FusedTaskLoss:
    """Computes every task's masked loss from the fused logits at once.

    Returns the vector of per-task losses in the user's task order; each
    entry is exactly what the task's own ``kmtl.losses`` class gives on that
    task's output (same formula, same normalisation). Under ``tf.distribute``
    each replica returns its share (its own sum over the global denominator);
    the shares add up to the single-device losses.

    Args:
        layout: the :class:`HeadLayout` of the model.
        normalize: ``"batch"`` or ``"labeled"``.
    """

    def __init__(self, layout: HeadLayout, normalize: str = "batch"):
        self.layout = layout
        self.normalize = check_normalize(normalize)

    def __call__(self, y, logits, sample_weight=None, return_counts=False, stacked=None, targets=None):
        """Per-task losses, shape ``(num_tasks,)``, float32.

        Args:
            y: dict ``{task name: encoded labels}``, or a packed batch
                (one matrix per label group).
            logits: fused logits ``(batch, layout.units)``.
            sample_weight: optional per-example weights ``(batch,)`` or a
                dict of them per task.
            return_counts: also return each task's (weighted) number of
                labelled entries in the batch, ``(num_tasks,)`` (in the global
                batch under ``tf.distribute``: summed over replicas).
            stacked: the groups' label matrices from :func:`stack_groups`,
                if already computed.
            targets: ``(mean, scale)`` of the standardised regression
                targets over the fused columns (:class:`TaskOutputs`); the
                labels are standardised before the loss.
        """
        layout = self.layout
        logits = ops.cast(logits, "float32")
        batch_size = ops.shape(logits)[0]
        if stacked is None:
            stacked = stack_groups(y, layout, batch_size)
        totals, counts = [], []
        for group, labels in zip(layout.groups, stacked):
            total, count = _group_terms(group, standardized_labels(group, labels, targets), logits,
                                        sample_weight, batch_size)
            totals.append(total)
            counts.append(count)
        total, local_count = layout.in_user_order(totals), layout.in_user_order(counts)
        # Each replica's share is its own sum over the global denominator
        # (keras_mtl.distribute); the same normaliser as the kmtl.losses classes.
        count, batch = global_counts(local_count, batch_size)
        # A batch holds at least one example; a task may have no label in it.
        per_task = ops.divide(total, batch) if self.normalize == "batch" else ops.divide_no_nan(total, count)
        return (per_task, count) if return_counts else per_task


class TaskMetrics(keras.metrics.Metric):
    """The metrics of every task of a model, as one Keras metric.

    Tasks of a label group left on their default metrics share one fused
    metric object where their kind has one (one
    :class:`keras_mtl.metrics.SigmoidTaskMetrics` for the binary and
    multilabel tasks, one :class:`keras_mtl.metrics.RegressionTaskMetrics`
    for the regression tasks), so the cost per step does not grow with a
    Python loop over tasks; tasks given their own metrics, and tasks of
    other kinds (categorical, counts), get one
    :class:`keras_mtl.metrics.MaskedMetric` each.

    ``update_state(y, y_pred, sample_weight)`` takes the labels (a dict
    keyed by task, or a packed batch) and the model's outputs (a dict keyed
    by task); ``result()`` returns
    ``{"<task>_<metric>": value}`` for every task, and :meth:`task_means`
    the mean over tasks of each figure.

    Args:
        layout: the model's :class:`HeadLayout`.
        chosen: ``{task name: metrics or None}``; ``None`` means the task's
            defaults.
        standardized: the tasks whose logits are standardised targets
            (:class:`TaskOutputs`): their metrics read the outputs.
    """

    def __init__(self, layout: HeadLayout, chosen: dict, standardized=(), name="task_metrics"):
        super().__init__(name=name)
        self.layout = layout
        # Their outputs, not their logits, are in user units: the metrics read the outputs.
        self.standardized = set(standardized)
        self.fused = []
        # (group, tasks, label columns or None, logit columns or None, whether the logits serve)
        self._fused_parts = []
        self.per_task = {}
        for group in layout.groups:
            default = [t for t in group.tasks if chosen[t.name] is None]
            metric = None
            if default and group.elementwise:
                metric = group.kind.fused_metrics([t.name for t in default], [t.units for t in default])
            fused = {t.name for t in default} if metric is not None else set()
            if metric is not None:
                self.fused.append(metric)
                self._fused_parts.append((group, default, *self._columns(group, default),
                                          not self.standardized.intersection(t.name for t in default)))
            for task in group.tasks:
                if task.name not in fused:
                    built = task.build_metrics(chosen[task.name])
                    if built:  # metrics=[]: nothing to update, no labels to slice each step
                        self.per_task[task.name] = built

    @property
    def reads_logits_only(self) -> bool:
        """Whether :meth:`update_state`, given the fused logits, reads no task's output."""
        return not self.per_task and all(parts[-1] for parts in self._fused_parts)

    @staticmethod
    def _columns(group, tasks):
        """The columns of ``tasks`` in the group's label matrix and logits (``None``: all)."""
        if len(tasks) == len(group.tasks):
            return None, None
        labels = np.concatenate([np.arange(*group.label_columns[t.name]) for t in tasks]).astype("int32")
        return labels, labels + group.start

    def update_state(self, y, y_pred, sample_weight=None, logits=None, stacked=None):
        """Updates every task's metrics.

        Args:
            y: labels ``{task: labels}`` or a packed batch.
            y_pred: the model's outputs ``{task: output}``.
            sample_weight: optional per-example weights, or a dict per task.
            logits: the fused logits behind ``y_pred``, if known: the fused
                metrics then activate them once instead of concatenating
                every task's output.
            stacked: the groups' label matrices, if already computed.
        """
        if not self.fused and not self.per_task:
            return  # metrics=[]: no labels to stack
        batch_size = ops.shape(logits if logits is not None else y_pred[self.layout.tasks[0].name])[0]
        if stacked is None:
            stacked = stack_groups(y, self.layout, batch_size)
        matrices = dict(zip((g.key for g in self.layout.groups), stacked))
        for metric, (group, tasks, label_columns, logit_columns, from_logits) in zip(self.fused, self._fused_parts):
            labels = matrices[group.key]
            if label_columns is not None:
                labels = ops.take(labels, label_columns, axis=1)
            if logits is not None and from_logits:
                part = group.logits_of(logits) if logit_columns is None else ops.take(logits, logit_columns, axis=1)
                values = ops.cast(group.kind.activate(part), "float32")  # as TaskOutputs computes it
            else:
                values = [ops.reshape(y_pred[t.name], (batch_size, t.units)) for t in tasks]
                values = values[0] if len(values) == 1 else ops.concatenate(values, axis=1)
            weights = None if sample_weight is None else stack_weights(sample_weight, tasks, batch_size)
            metric.update_state(labels, values, weights)
        for name, task_metrics in self.per_task.items():
            group = self.layout.group_of[name]
            labels = group.labels_of(matrices[group.key], self.layout.block(name).task)
            weight = sample_weight.get(name) if isinstance(sample_weight, dict) else sample_weight
            for metric in task_metrics:
                metric.update_state(labels, y_pred[name], sample_weight=weight)

    def result(self):
        found = {}
        for metric in self.fused:
            found.update(metric.result())
        for task_metrics in self.per_task.values():
            for metric in task_metrics:
                result = metric.result()
                found.update(result if isinstance(result, dict) else {metric.name: result})
        return found

    def task_means(self, task_losses=None, every_step: bool = False) -> dict:
        """``{"mean_<metric>": …}``: each per-task figure averaged over the tasks.

        Computed from the fused metrics' vectors, without one scalar per
        task. With ``task_losses`` (a :class:`keras_mtl.metrics.TaskLossMeans`)
        also ``"mean_task_loss"``. With ``every_step`` (what a training step
        logs), without the figures of
        :data:`keras_mtl.metrics.EPOCH_END_FIGURES` (``mean_auc``).
        """
        leave_out = metrics_lib.EPOCH_END_FIGURES if every_step else frozenset()
        groups: dict[str, list] = {}
        for metric in self.fused + ([task_losses] if task_losses is not None else []):
            for suffix, vector in metric.vectors(leave_out).items():
                groups.setdefault(suffix, []).append(vector)
        for name, task_metrics in self.per_task.items():
            for metric in task_metrics:
                if metric.name[len(name) + 1:] in leave_out:
                    continue
                result = metric.result()
                for key, value in (result if isinstance(result, dict) else {metric.name: result}).items():
                    groups.setdefault(key[len(name) + 1:], []).append(ops.reshape(value, (1,)))
        return {"mean_task_loss" if suffix == "loss" else f"mean_{suffix}": ops.mean(ops.concatenate(parts))
                for suffix, parts in groups.items()}

    def reset_state(self):
        for metric in self.fused:
            metric.reset_state()
        for task_metrics in self.per_task.values():
            for metric in task_metrics:
                metric.reset_state()
