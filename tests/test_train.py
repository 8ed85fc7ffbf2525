"""Training pieces: losses, schedule, presets, and config errors that must fail at start with a clear message."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs.base import PRESETS, get_config
from tests.conftest import FakeTaskStore, tiny_config
from universeg_jax import train


def test_soft_dice_loss_and_hard_dice():
    labels = jnp.zeros((2, 4, 4, 1)).at[:, :2].set(1.0)
    perfect = jnp.where(labels > 0, 20.0, -20.0)
    np.testing.assert_allclose(train.soft_dice_loss(perfect, labels), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(train.soft_dice_loss(-perfect, labels), [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(train.hard_dice(perfect, labels), [1.0, 1.0], atol=1e-6)
    half = jnp.where(jnp.zeros_like(labels).at[:, :1].set(1.0) > 0, 1.0, -1.0)  # predicts half the foreground
    np.testing.assert_allclose(train.hard_dice(half, labels), [2 * 4 / (4 + 8)] * 2, atol=1e-5)
    assert train.cross_entropy_loss(perfect, labels).shape == (2,)


def test_soft_dice_cross_entropy_keeps_a_gradient_where_soft_dice_has_none():
    """A model saturated at "foreground everywhere" (the collapse seen in the recipe probes): soft Dice's
    gradient has vanished, the combined loss still pushes the background pixels' logits down."""
    import jax

    labels = jnp.zeros((1, 4, 4, 1)).at[:, :2].set(1.0)
    saturated = jnp.full(labels.shape, 30.0)
    dice_grad = jax.grad(lambda x: train.soft_dice_loss(x, labels).sum())(saturated)
    combined_grad = jax.grad(lambda x: train.soft_dice_cross_entropy_loss(x, labels).sum())(saturated)
    assert float(jnp.abs(dice_grad).max()) < 1e-10
    background = combined_grad[labels == 0]
    assert float(background.min()) > 1e-3  # gradient descent lowers the wrong logits
    np.testing.assert_allclose(
        train.soft_dice_cross_entropy_loss(saturated, labels),
        train.soft_dice_loss(saturated, labels) + train.cross_entropy_loss(saturated, labels),
        rtol=1e-6,
    )
    assert train.LOSS_FUNCTIONS["soft_dice_cross_entropy"] is train.soft_dice_cross_entropy_loss


def test_learning_rate_schedule_warms_up_then_holds_or_decays():
    config = get_config("cpu")
    config.train.steps, config.optim.warmup_steps, config.optim.lr = 100, 10, 1e-3
    constant = train.learning_rate_schedule(config)
    np.testing.assert_allclose([constant(0), constant(5), constant(10), constant(99)], [0, 5e-4, 1e-3, 1e-3], rtol=1e-6)
    config.optim.schedule, config.optim.final_lr_ratio = "cosine", 0.1
    cosine = train.learning_rate_schedule(config)
    np.testing.assert_allclose([cosine(10), cosine(100)], [1e-3, 1e-4], rtol=1e-5)
    assert 1e-4 < float(cosine(55)) < 1e-3


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid(preset):
    config = get_config(preset)
    train.validate_config(config)
    if preset in ("default", "tpu_pod", "gpu_node"):
        assert config.data.support_size == 64 and config.data.size == 128
        assert config.model.encoder_blocks == (64, 64, 64, 64)
    if preset in ("tpu_pod", "gpu_node"):
        assert config.model.dtype == "bfloat16"
    assert get_config(preset if preset != "default" else "") == get_config(preset)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown config preset 'nope'"):
        get_config("nope")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"train.steps": -5}, "train.steps must be positive, got -5"),
        ({"train.batch_size": 0}, "train.batch_size must be positive"),
        ({"data.support_size": 0}, "data.support_size must be positive"),
        ({"optim.lr": 0.0}, "optim.lr must be positive"),
        ({"optim.warmup_steps": -1}, "optim.warmup_steps must be >= 0"),
        ({"model.dtype": "float16"}, "model.dtype='float16' is not one of"),
        ({"train.loss": "focal"}, "train.loss='focal' is not one of"),
        ({"data.size": 31}, "data.size=31 must be a multiple of 2"),
        ({"train.eval_every": 5, "data.held_out": ()}, "needs held-out datasets"),
    ],
)
def test_bad_config_values_fail_with_the_field_name(changes, message):
    with pytest.raises(ValueError, match=message):
        train.validate_config(tiny_config(**changes))


def test_load_model_needs_a_training_workdir(tmp_path):
    from universeg_jax import checkpoint

    with pytest.raises(FileNotFoundError, match="is not a training workdir"):
        checkpoint.load_model(tmp_path)


def test_support_larger_than_a_task_fails_before_training(tmp_path):
    store = FakeTaskStore({"fake_a": 1}, subjects=5, size=32)
    with pytest.raises(ValueError, match=r"data.support_size=9 is larger than every task of dataset 'fake_a'"):
        train.train(tiny_config(**{"data.support_size": 9}), str(tmp_path / "run"), train_store=store)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_workdir_fails_clearly(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="is not writable"):
        train.train(tiny_config(), str(blocker / "run"), train_store=FakeTaskStore())


def test_unknown_dataset_fails_clearly(tmp_path):
    config = tiny_config(**{"data.datasets": ("synthetic_tasks,no_such_dataset",), "data.data_dir": str(tmp_path)})
    with pytest.raises(ValueError, match=r"unknown datasets \['no_such_dataset'\]"):
        train.load_stores(config)


def test_held_out_only_leaves_nothing_to_train(tmp_path):
    config = tiny_config(**{"data.datasets": ("stardist_nuclei",), "data.held_out": ("stardist_nuclei",)})
    with pytest.raises(ValueError, match="leaves no dataset to train on"):
        train.load_stores(config)


def test_dataset_weights_apply_to_training_and_not_to_the_held_out_evaluation():
    config = tiny_config(**{"data.dataset_weights": "fake_a=2,fake_b=1"})
    with pytest.raises(ValueError, match="not among the training tasks"):  # weights are checked for training
        train.episode_dataset(FakeTaskStore({"fake_c": 2}), config, seed=0, training=True)
    # The held-out store has none of the weighted (training) datasets: its episodes ignore the weights.
    held_out = train.episode_dataset(FakeTaskStore({"fake_c": 2}), config, seed=1, training=False)
    assert held_out[0]["query"].shape == (config.train.batch_size, 32, 32, 1)


@pytest.mark.parametrize("dtype, remat", [("bfloat16", False), ("float32", True)])
def test_bfloat16_and_remat_steps_train_float32_parameters(dtype, remat):
    import jax
    from flax import nnx

    from universeg_jax import parallel

    config = tiny_config(**{"model.dtype": dtype, "model.remat": remat, "optim.warmup_steps": 0})
    data = train.episode_dataset(FakeTaskStore(), config, seed=0, training=False)
    mesh = parallel.make_mesh()
    graphdef, params = nnx.split(train.create_model(config))
    schedule = train.learning_rate_schedule(config)
    tx = train.make_optimizer(config, schedule)
    train_step, eval_step = train.make_steps(graphdef, tx, schedule, config, mesh)
    state = train.init_state((graphdef, params), tx, mesh)
    before = jax.tree.map(np.array, state["params"])
    state, metrics = train_step(state, parallel.global_batch(data[0], mesh))
    assert np.isfinite(float(metrics["loss"])) and int(state["step"]) == 1
    assert {leaf.dtype for leaf in jax.tree.leaves(state["params"])} == {np.dtype("float32")}
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state["params"])))
    assert np.isfinite(float(eval_step(state["params"], parallel.global_batch(data[1], mesh))["dice"]))


@pytest.mark.parametrize("preset", ["gpu", "tiny", "probe", "cpu"])
def test_default_model_recipe_never_trains_on_the_evaluated_held_out_datasets(preset):
    from configs import default_model
    from universeg_jax.data.contract import DEFAULT_HELD_OUT
    from universeg_jax.data.tasks import dataset_names

    config = default_model.get_config(preset)
    trained_on = {name.partition("/")[0] for name in dataset_names(config.data.datasets)}
    assert set(dataset_names(config.data.held_out)) == set(DEFAULT_HELD_OUT)
    assert trained_on and not trained_on & set(DEFAULT_HELD_OUT)
    train.validate_config(config)


def test_held_out_evaluation_caps_its_support_at_what_the_held_out_tasks_hold():
    config = tiny_config(**{"data.support_size": 6})
    few_subjects = FakeTaskStore({"fake_c": 2}, subjects=4)  # 4 subjects: a query and at most 3 support pairs
    with pytest.raises(ValueError, match="larger than every task"):
        train.episode_dataset(few_subjects, config, seed=0, training=True)
    batch = train.episode_dataset(few_subjects, config, seed=0, training=False)[0]
    assert batch["support_images"].shape[1] == 3
    with pytest.raises(ValueError, match="no task with 2 or more subjects"):
        train.held_out_support_size(FakeTaskStore({"fake_c": 1}, subjects=1), config)


def test_init_weights_start_training_from_saved_parameters_of_the_same_architecture(tmp_path):
    import jax
    from flax import nnx

    from universeg_jax import weights

    saved = train.create_model(tiny_config(**{"model.encoder_blocks": (8, 8)}))
    path = weights.save(saved, tmp_path / "start.safetensors")
    config = tiny_config(**{"train.init_weights": str(path)})
    config.seed = 1  # random parameters would differ from the saved ones
    _, params = train.initial_params(config, train.create_model(config))
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(nnx.state(saved)), strict=True):
        np.testing.assert_array_equal(got, want)
    other = tiny_config(**{"train.init_weights": str(path), "model.encoder_blocks": (8, 16)})
    with pytest.raises(ValueError, match="train.init_weights=.*different architecture"):
        train.initial_params(other, train.create_model(other))
    missing = tiny_config(**{"train.init_weights": str(tmp_path / "none.safetensors")})
    with pytest.raises(FileNotFoundError, match="config train.init_weights: .*none.safetensors"):
        train.initial_params(missing, train.create_model(missing))
    # A run that resumes never reads them (its checkpoint has the parameters).
    _, random_params = train.initial_params(missing, train.create_model(missing), resuming=True)
    assert jax.tree.structure(random_params) == jax.tree.structure(params)


def test_held_out_support_fits_every_held_out_dataset():
    from types import SimpleNamespace

    def task(dataset, subjects):
        return SimpleNamespace(dataset=dataset, subjects=[f"s{k}" for k in range(subjects)])

    config = tiny_config(**{"data.support_size": 8})
    store = SimpleNamespace(tasks=[task("nuclei", 40), task("skull", 5), task("skull", 3)])
    assert train.held_out_support_size(store, config) == 4  # skull's largest task: a query and 4 support slabs
    store = SimpleNamespace(tasks=[task("nuclei", 40), task("single", 1)])
    with pytest.raises(ValueError, match="held-out dataset 'single'"):
        train.held_out_support_size(store, config)


def test_default_model_recipe_is_the_gpu_preset_and_unknown_presets_fail():
    from configs import default_model

    assert default_model.get_config() == default_model.get_config("gpu")
    with pytest.raises(ValueError, match="unknown default-model preset 'stage3'"):
        default_model.get_config("stage3")


def test_has_checkpoint_sees_finished_saves_only(tmp_path):
    from universeg_jax import checkpoint

    assert not checkpoint.has_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-1").mkdir(parents=True)
    assert not checkpoint.has_checkpoint(tmp_path)  # an interrupted save
    (tmp_path / "checkpoints" / "20").mkdir()
    assert checkpoint.has_checkpoint(tmp_path)


def test_resuming_compares_dataset_names_not_their_spelling(tmp_path):
    """Runs saved ``data.datasets`` as an "a,b" string before it became a tuple: the same names still resume."""
    import json

    from universeg_jax import checkpoint

    config = tiny_config(**{"data.datasets": ("synthetic_tasks", "mni152_tissue")}).to_dict()
    saved = json.loads(json.dumps(config, default=list))
    saved["data"]["datasets"] = "synthetic_tasks,mni152_tissue"
    saved["data"]["held_out"] = ",".join(config["data"]["held_out"])
    (tmp_path / "config.json").write_text(json.dumps(saved))
    checkpoint.check_resumable(tmp_path, config)
    config["data"]["datasets"] = ("synthetic_tasks",)
    with pytest.raises(
        ValueError, match=r"data.datasets: \['synthetic_tasks', 'mni152_tissue'\] -> \['synthetic_tasks'\]"
    ):
        checkpoint.check_resumable(tmp_path, config)
