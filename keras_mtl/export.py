"""SavedModel export for TF Serving, with named inputs, outputs and tasks.

An exported version directory holds:

* ``serving_default`` — inputs named after the model's ``keras.Input``
  layers (batch dimension ``-1``); one output per task named after it, in
  user units (probabilities, or values for regression), plus
  ``<task>_class`` (arg-max) for categorical tasks;
* ``serving_tf_example`` — the same outputs from serialized
  ``tf.train.Example`` protos (input ``examples``);
* ``assets.extra/keras_mtl_tasks.json`` — the task list (name, kind,
  label/class names), plain JSON readable without keras_mtl.

The directory is written beside its final place and renamed into it, so a
version appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import keras
import tensorflow as tf

__all__ = [
    "TASKS_FILE",
    "export_saved_model",
    "next_version_dir",
    "read_tasks",
    "serving_signature",
]

TASKS_FILE = os.path.join("assets.extra", "keras_mtl_tasks.json")
EXAMPLE_INPUT = "examples"


def _input_specs(model) -> list[tf.TensorSpec]:
    specs = []
    for tensor in model.inputs:
        shape = (None,) + tuple(tensor.shape[1:])
        if any(d is None for d in shape[1:]):
            raise ValueError(
                f"Input {tensor.name!r} has an unknown dimension {shape}; give every "
                "non-batch dimension a size in keras.Input(shape=...) to export it."
            )
        specs.append(tf.TensorSpec(shape, tf.as_dtype(tensor.dtype), name=tensor.name))
    return specs


def _structure(model, flat):
    """Rebuilds the model's input structure (tensor, list or dict)."""
    struct = model._inputs_struct
    if isinstance(struct, dict):
        return {t.name: x for t, x in zip(model.inputs, flat)}
    if isinstance(struct, (list, tuple)):
        return list(flat)
    return flat[0]


def _user_outputs(model, inputs) -> dict[str, tf.Tensor]:
    outputs = model(inputs, training=False)
    named = {}
    for task in model.tasks:
        named[task.name] = outputs[task.name]
        if task.kind == "categorical":
            named[f"{task.name}_class"] = tf.argmax(outputs[task.name], axis=-1)
    return named


def _example_spec(specs):
    """tf.train.Example feature spec: floats as float_list, ints as int64_list."""
    spec = {}
    for s in specs:
        dtype = tf.float32 if s.dtype.is_floating else tf.int64
        spec[s.name] = tf.io.FixedLenFeature(s.shape[1:], dtype)
    return spec


def serving_signature(model) -> dict:
    """Describes the ``serving_default`` inputs and outputs of ``model``."""
    return {
        "inputs": {s.name: {"shape": [-1] + list(s.shape[1:]), "dtype": s.dtype.name}
                   for s in _input_specs(model)},
        "outputs": {name: {"shape": [-1] + list(t.shape[1:]), "dtype": t.dtype.name}
                    for name, t in _symbolic_outputs(model).items()},
    }


def _symbolic_outputs(model):
    outputs = {}
    for task in model.tasks:
        outputs[task.name] = tf.TensorSpec((None, task.units), tf.float32)
        if task.kind == "categorical":
            outputs[f"{task.name}_class"] = tf.TensorSpec((None,), tf.int64)
    return outputs


def _tasks_metadata(model) -> dict:
    tasks = []
    for task in model.tasks:
        entry = {"name": task.name, "kind": task.kind, "units": task.units,
                 "output": task.name, "unit_names": task.output_names,
                 "loss_weight": task.loss_weight}
        if task.kind == "categorical":
            entry["class_output"] = f"{task.name}_class"
        tasks.append(entry)
    return {"format": "keras_mtl.tasks/1", "model": model.name, "tasks": tasks,
            "inputs": [t.name for t in model.inputs]}


def export_saved_model(model, path, *, overwrite: bool = False, verbose: bool = False) -> Path:
    """Writes ``model`` as a TF-Serving-ready SavedModel version directory.

    Args:
        model: a :class:`keras_mtl.MultiTaskModel`.
        path: the version directory to create, e.g. ``"serving/street/1"``
            (TF Serving expects ``<model base path>/<integer version>``).
        overwrite: replace an existing directory at ``path``.
        verbose: print the exported endpoints.

    Returns:
        The ``Path`` written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: an input has an unknown non-batch dimension.
    """
    if not hasattr(model, "tasks"):
        raise TypeError("export_saved_model expects a keras_mtl.MultiTaskModel.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it or export to "
            f"a new version, e.g. {next_version_dir(path.parent)}."
        )
    specs = _input_specs(model)
    example_spec = _example_spec(specs)

    def serve(*flat):
        return _user_outputs(model, _structure(model, flat))

    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, example_spec)
        flat = [tf.cast(parsed[s.name], s.dtype) for s in specs]
        return _user_outputs(model, _structure(model, flat))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=specs)
    archive.add_endpoint("serving_tf_example", serve_examples,
                         input_signature=[tf.TensorSpec((None,), tf.string, name=EXAMPLE_INPUT)])

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        archive.write_out(str(staging), verbose=verbose)
        metadata = staging / TASKS_FILE
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_text(json.dumps(_tasks_metadata(model), indent=2))
        if path.exists():
            retired = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, retired)
            os.rename(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def read_tasks(path) -> dict:
    """Reads the task metadata of an exported version directory (plain JSON)."""
    file = Path(path) / TASKS_FILE
    if not file.exists():
        raise FileNotFoundError(f"{file} not found: {path} was not exported by keras_mtl.")
    return json.loads(file.read_text())


def next_version_dir(base) -> Path:
    """``base/<n>`` with ``n`` one above the highest integer version present."""
    base = Path(base)
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.exists() else []
    return base / str(max(versions, default=0) + 1)
