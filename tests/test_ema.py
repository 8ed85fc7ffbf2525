"""The moving average of the weights (``optim.ema_decay``): its update, its place in the train state and the
checkpoint, that evaluation and export use it, and that it cannot be switched on or off in a resumed run."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import FakeTaskStore, tiny_config
from universeg_jax import checkpoint, train


def test_ema_update_ramps_up_to_the_decay():
    ema, params = {"w": jnp.array([0.0, 10.0])}, {"w": jnp.array([1.0, 0.0])}
    # Step 0: d = min(0.99, 1/10) = 0.1, the average moves most of the way to the parameters.
    np.testing.assert_allclose(train.ema_update(ema, params, 0.99, 0)["w"], [0.9, 1.0], rtol=1e-6)
    # Step 8: d = 9/18 = 0.5.
    np.testing.assert_allclose(train.ema_update(ema, params, 0.99, 8)["w"], [0.5, 5.0], rtol=1e-6)
    # Late: d = the decay (990/999 > 0.99).
    np.testing.assert_allclose(train.ema_update(ema, params, 0.99, 989)["w"], [0.01, 9.9], rtol=1e-5)


def test_ema_decay_out_of_range_fails_with_the_field_name():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="optim.ema_decay must lie in"):
            train.validate_config(tiny_config(**{"optim.ema_decay": bad}))


def restore_state(workdir, step):
    with ocp.CheckpointManager(
        workdir / "checkpoints", item_names=("state",), options=ocp.CheckpointManagerOptions(read_only=True)
    ) as manager:
        return manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))["state"]


def test_training_keeps_checkpoints_and_evaluates_the_moving_average(tmp_path):
    from flax import nnx

    config = tiny_config(
        **{
            "optim.ema_decay": 0.5,
            "train.steps": 4,
            "checkpoint.every": 2,
            "checkpoint.keep_last": 5,
            "optim.warmup_steps": 0,
        }
    )
    train.train(config, str(tmp_path), train_store=FakeTaskStore())
    before, after = restore_state(tmp_path, 2), restore_state(tmp_path, 4)
    leaves = lambda tree: jax.tree.leaves(tree)
    assert len(leaves(after["ema_params"])) == len(leaves(after["params"]))
    assert any(not np.array_equal(e, p) for e, p in zip(leaves(after["ema_params"]), leaves(after["params"])))
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(after["ema_params"]), leaves(before["ema_params"])))
    exported = nnx.state(checkpoint.load_model(tmp_path))
    for got, want in zip(leaves(exported), leaves(after["ema_params"]), strict=True):
        np.testing.assert_array_equal(got, want)


def test_one_step_of_training_updates_the_average_from_the_new_parameters():
    from flax import nnx

    from universeg_jax import parallel

    config = tiny_config(**{"optim.ema_decay": 0.9, "optim.warmup_steps": 0})
    data = train.episode_dataset(FakeTaskStore(), config, seed=0, training=True)
    mesh = parallel.make_mesh()
    graphdef, params = nnx.split(train.create_model(config))
    schedule = train.learning_rate_schedule(config)
    tx = train.make_optimizer(config, schedule)
    train_step, _ = train.make_steps(graphdef, tx, schedule, config, mesh)
    state = train.init_state((graphdef, params), tx, mesh, ema=True)
    start = jax.tree.map(np.array, state["params"])
    for leaf, average in zip(jax.tree.leaves(start), jax.tree.leaves(state["ema_params"])):
        np.testing.assert_array_equal(leaf, average)  # the average starts at the parameters
    state, _ = train_step(state, parallel.global_batch(data[0], mesh))
    d = 0.1  # min(0.9, (1 + 0) / (10 + 0))
    for old, new, average in zip(
        jax.tree.leaves(start), jax.tree.leaves(state["params"]), jax.tree.leaves(state["ema_params"])
    ):
        np.testing.assert_allclose(average, d * old + (1 - d) * np.asarray(new), rtol=1e-6, atol=1e-7)
    assert train.eval_params(state) is state["ema_params"]


def test_switching_the_average_on_in_a_resumed_run_is_refused(tmp_path):
    train.train(tiny_config(**{"train.steps": 2}), str(tmp_path), train_store=FakeTaskStore())
    with pytest.raises(ValueError, match=r"optim.ema_decay: 0.0 -> 0.999 \(turns the moving average"):
        train.train(
            tiny_config(**{"train.steps": 4, "optim.ema_decay": 0.999}), str(tmp_path), train_store=FakeTaskStore()
        )
    # Another non-zero decay is allowed (the state keeps its shape).
    with_ema = tmp_path / "ema"
    train.train(tiny_config(**{"train.steps": 2, "optim.ema_decay": 0.9}), str(with_ema), train_store=FakeTaskStore())
    train.train(tiny_config(**{"train.steps": 3, "optim.ema_decay": 0.99}), str(with_ema), train_store=FakeTaskStore())
    assert int(restore_state(with_ema, 3)["step"]) == 3
