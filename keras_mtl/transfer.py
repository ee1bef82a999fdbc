"""Transfer learning: learn task A, then reuse the trunk for task B.

The serial cousin of multi-task learning. Pretrain on a task with lots of
data, put new heads for the target task on the same trunk with the trunk
frozen, train the heads, then optionally unfreeze and fine-tune everything
with a lower learning rate::

    source = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("a")])
    source.compile("adam"); source.fit(big_a_dataset, epochs=10)

    target = kmtl.transfer.new_heads(source, [kmtl.Task("b")])   # trunk frozen
    target.compile("adam"); target.fit(small_b_dataset, epochs=10)

    kmtl.transfer.unfreeze(target, learning_rate=1e-4)           # recompiles
    target.fit(small_b_dataset, epochs=5)

The new model shares the trunk's layers (and weights) with the source model;
it is an ordinary :class:`keras_mtl.MultiTaskModel` that saves and exports
like any other.
"""

from __future__ import annotations

import keras

from keras_mtl.model import MultiTaskModel

__all__ = ["new_heads", "trunk_layers", "unfreeze"]


def _features_of(model: MultiTaskModel) -> keras.KerasTensor:
    """The trunk's output tensor of a MultiTaskModel: its shared representation."""
    return model.representation_layer.input


def _is_functional(model) -> bool:
    """Whether ``model`` is a graph of layers (functional), so its tensors can be reused."""
    try:
        return model.input is not None and model.outputs is not None
    except (AttributeError, ValueError):  # a subclassed model that was never called symbolically
        return False


def new_heads(model, tasks, *, features: str | None = None, freeze: bool = True,
              sharing=None, name: str | None = None) -> MultiTaskModel:
    """A new multi-task model on the trunk of ``model``, with heads for ``tasks``.

    Args:
        model: a trained :class:`keras_mtl.MultiTaskModel` (its trunk is
            reused) or any functional Keras model (its output, or the layer
            named ``features``, becomes the trunk's output).
        tasks: the new tasks (:class:`keras_mtl.Task` list).
        features: the name of the layer whose output feeds the new heads
            (default: a MultiTaskModel's whole trunk, a plain model's output).
            Cutting lower keeps more general, lower-level features.
        freeze: make the reused trunk layers non-trainable (BatchNorm layers
            then run in inference mode).
        sharing: optional sharing layer for the new model.
        name: name of the new model.

    Returns:
        An uncompiled :class:`keras_mtl.MultiTaskModel` sharing the trunk's
        layers and weights with ``model``.

    Example:
        >>> import keras_mtl as kmtl
        >>> inputs = keras.Input((4,), name="x")
        >>> features = keras.layers.Dense(8, name="trunk")(inputs)
        >>> source = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("a")])
        >>> target = new_heads(source, [kmtl.Task("b"), kmtl.Task("c", kind="regression")])
        >>> target.task_names, target.get_layer("trunk") is source.get_layer("trunk")
        (['b', 'c'], True)
        >>> [(layer.name, layer.trainable) for layer in trunk_layers(target)]
        [('trunk', False)]
    """
    if isinstance(model, MultiTaskModel):
        # By default the whole trunk; a layer name cuts lower (more general features).
        trunk_output = model.get_layer(features).output if features else _features_of(model)
    elif isinstance(model, keras.Model) and _is_functional(model):
        trunk_output = model.get_layer(features).output if features else model.outputs[0]
        if len(model.outputs) > 1 and features is None:
            raise ValueError(
                f"{model.name} has {len(model.outputs)} outputs; name the trunk's last layer "
                "with features='layer_name'."
            )
    else:
        raise TypeError("new_heads needs a MultiTaskModel or a functional keras.Model.")
    trunk = keras.Model(model.input, trunk_output)
    if freeze:
        for layer in trunk.layers:
            layer.trainable = False
    return MultiTaskModel(model.input, trunk_output, tasks, sharing=sharing,
                          name=name or f"{model.name}_transfer")


def trunk_layers(model: MultiTaskModel) -> list[keras.layers.Layer]:
    """The layers of ``model`` below its sharing layer and heads."""
    trunk = keras.Model(model.input, _features_of(model))
    return [layer for layer in trunk.layers if not isinstance(layer, keras.layers.InputLayer)]


def unfreeze(model: MultiTaskModel, *, learning_rate: float = 1e-4, optimizer=None,
             **compile_kwargs) -> MultiTaskModel:
    """Makes every trunk layer trainable and recompiles for fine-tuning.

    Args:
        model: a model from :func:`new_heads`.
        learning_rate: Adam learning rate for fine-tuning (lower than for
            training the heads, so the pretrained features are not wiped out).
        optimizer: an optimizer instance instead of Adam(learning_rate).
        **compile_kwargs: passed to ``model.compile`` (loss weights, metrics,
            balancing, …); by default the previous compile settings are kept.

    Returns:
        ``model``, recompiled.

    Example:
        >>> import keras_mtl as kmtl
        >>> inputs = keras.Input((4,), name="x")
        >>> source = kmtl.MultiTaskModel(inputs, keras.layers.Dense(8, name="trunk")(inputs),
        ...                              [kmtl.Task("a")])
        >>> target = new_heads(source, [kmtl.Task("b")])
        >>> target.compile(optimizer="adam")
        >>> len(target.trainable_weights)   # the new head's kernel and bias
        2
        >>> target = unfreeze(target, learning_rate=1e-4)
        >>> len(target.trainable_weights), round(float(target.optimizer.learning_rate.numpy()), 6)
        (4, 0.0001)
    """
    for layer in trunk_layers(model):
        layer.trainable = True
    previous = dict(getattr(model, "_mtl_compile_config", {}) or {})
    previous.pop("optimizer", None)
    if model.balancing is not None and "balancing" not in compile_kwargs:
        compile_kwargs["balancing"] = model.balancing  # the same object: its learned state carries on
    previous.update(compile_kwargs)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate), **previous)
    return model
