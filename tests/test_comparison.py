"""kmtl.compare: single-task vs multi-task networks over seeds."""

import keras
import numpy as np

import keras_mtl as kmtl


def trunk():
    inputs = keras.Input((6,), name="x")
    return inputs, keras.layers.Dense(8, activation="relu")(inputs)


def test_compare_table_matches_per_seed_values(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype("float32")
    labels = {"a": (x[:, 0] > 0).astype("float32"), "r": x[:, 1].astype("float32")}
    labels["a"][::3] = np.nan
    tasks = [kmtl.Task("a"), kmtl.Task("r", kind="regression")]
    result = kmtl.compare(trunk, tasks, x[:200], {k: v[:200] for k, v in labels.items()},
                          x[200:], {k: v[200:] for k, v in labels.items()},
                          epochs=1, seeds=(0, 1), verbose=False)
    assert [r["task"] for r in result.rows] == ["a", "r"]
    assert [r["metric"] for r in result.rows] == ["auc", "mae"]
    for row in result.rows:
        single = np.array(result.per_seed[(row["task"], "single")])
        multi = np.array(result.per_seed[(row["task"], "multi")])
        assert len(single) == len(multi) == 2
        assert row["single"] == np.mean(single) and row["multi_std"] == np.std(multi)
        sign = -1 if row["metric"] == "mae" else 1
        np.testing.assert_allclose(row["relative_change"],
                                   sign * (multi.mean() - single.mean()) / abs(single.mean()))
    # Two single-task nets: 2 × (6·8+8) trunk + heads (9 + 9); one multi: 56 + 18.
    assert result.params == {"single": 2 * 56 + 9 + 9, "multi": 56 + 18}
    assert "parameters" in str(result)
    result.plot(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000


def test_same_seed_gives_same_numbers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 6)).astype("float32")
    labels = {"a": (x[:, 0] > 0).astype("float32")}
    run = lambda: kmtl.compare(trunk, [kmtl.Task("a")], x[:80], {"a": labels["a"][:80]},  # noqa: E731
                               x[80:], {"a": labels["a"][80:]}, epochs=1, seeds=(3,), verbose=False)
    assert run().per_seed == run().per_seed
