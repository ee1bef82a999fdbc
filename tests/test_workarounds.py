"""Upstream behaviour that keras_mtl works around: each test fails once Keras no longer needs it.

The workarounds for ``tf.distribute.MultiWorkerMirroredStrategy`` are guarded
in ``tests/test_distribute.py``.
"""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.portable


@keras.saving.register_keras_serializable(package="keras_mtl_tests")
class _Drawing(keras.layers.Layer):
    """A layer that draws random numbers from its own seed generator."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.random.SeedGenerator(1)

    def call(self, x):
        return x


def test_keras_files_do_not_restore_a_layers_seed_generator(tmp_path):
    """``Balancer.save_own_variables`` stores the strategy's seed state itself because Keras
    3.15 saves a layer's seed generator state but restores the initial one. When this
    test fails, Keras restores it: remove that workaround from keras_mtl/balancing/base.py."""
    inputs = keras.Input((1,))
    layer = _Drawing()
    model = keras.Model(inputs, layer(inputs))
    for _ in range(2):
        keras.random.normal((2,), seed=layer.generator)
    drawn = keras.ops.convert_to_numpy(layer.generator.state)
    model.save(tmp_path / "drawing.keras")
    reloaded = keras.saving.load_model(tmp_path / "drawing.keras").layers[-1]
    restored = keras.ops.convert_to_numpy(reloaded.generator.state)
    assert not np.array_equal(restored, drawn), "Keras now restores seed generator state"


def test_the_workaround_restores_the_strategys_random_stream(tmp_path):
    import keras_mtl as kmtl

    inputs = keras.Input((2,))
    model = kmtl.MultiTaskModel(inputs, keras.layers.Dense(3)(inputs), [kmtl.Task("a"), kmtl.Task("b")])
    model.compile(optimizer="sgd", balancing=kmtl.balancing.RandomLossWeighting(seed=3))
    x = np.ones((8, 2), "float32")
    labels = {"a": np.ones(8, "float32"), "b": np.zeros(8, "float32")}
    model.fit(x, labels, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "rlw.keras")
    reloaded = keras.saving.load_model(tmp_path / "rlw.keras")
    drawn = [keras.ops.convert_to_numpy(m.balancing.combine(None, None)[0]) for m in (model, reloaded)]
    np.testing.assert_array_equal(drawn[0], drawn[1])
