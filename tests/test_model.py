"""The Flax model equals the official UniverSeg and guards its inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reference_model import reference_forward
from universeg_jax import weights
from universeg_jax.model import UniverSeg, count_params

FIXTURE = "tests/data/universeg_v1_torch_seed0"


def channels_last(query, support_images, support_labels):
    return query.transpose(0, 2, 3, 1), support_images.transpose(0, 1, 3, 4, 2), support_labels.transpose(0, 1, 3, 4, 2)


def random_inputs(seed, b, s, h, w, support_batch=None):
    rng = np.random.default_rng(seed)
    query = rng.random((b, h, w, 1), dtype=np.float32)
    images = rng.random((support_batch or b, s, h, w, 1), dtype=np.float32)
    labels = (rng.random((support_batch or b, s, h, w, 1)) > 0.5).astype(np.float32)
    return query, images, labels


def with_random_biases(model, seed):
    """Default init has zero biases; give them values so that the bias paths are checked too."""
    rng = np.random.default_rng(seed)
    state = weights.official_state_dict(model)
    for key in state:
        if key.endswith("bias"):
            state[key] = rng.normal(0, 0.05, state[key].shape).astype(np.float32)
    return weights.from_official_state_dict(state, model.encoder_blocks, model.decoder_blocks), state


def test_v1_has_the_official_parameter_count():
    assert count_params(UniverSeg()) == 1_182_785


def test_fixture_logits_are_reproduced_for_the_whole_batch():
    model = weights.load_official(f"{FIXTURE}.pt")
    data = np.load(f"{FIXTURE}.npz")
    inputs = channels_last(data["target_image"], data["support_images"], data["support_labels"])
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, *x: nnx.merge(graphdef, s)(*x))(state, *inputs)
    chex.assert_shape(logits, (2, 128, 128, 1))
    error = np.abs(np.asarray(logits) - data["logits"].transpose(0, 2, 3, 1)).max()
    assert error <= 1e-5, error


block = st.one_of(st.integers(1, 6), st.tuples(st.integers(1, 6), st.integers(1, 6)))


@st.composite
def architectures(draw):
    encoder = draw(st.lists(block, min_size=1, max_size=4))
    decoder = None
    if len(encoder) > 1 and draw(st.booleans()):
        decoder = draw(st.lists(block, min_size=1, max_size=len(encoder) - 1))
    factor = 2 ** (len(encoder) - 1)
    h, w = factor * draw(st.integers(1, 3)), factor * draw(st.integers(1, 3))
    return encoder, decoder, draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w, draw(st.integers(0, 99))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_any_official_architecture_matches_the_concatenating_reference(arch):
    encoder, decoder, b, s, h, w, seed = arch
    model, state = with_random_biases(UniverSeg(encoder, decoder, rngs=nnx.Rngs(seed)), seed)
    query, images, labels = random_inputs(seed, b, s, h, w)
    ours = np.asarray(model(query, images, labels))
    ref = reference_forward(
        state,
        len(model.encoder_blocks),
        len(model.decoder_blocks),
        query.transpose(0, 3, 1, 2),
        images.transpose(0, 1, 4, 2, 3),
        labels.transpose(0, 1, 4, 2, 3),
    )
    ref = np.asarray(ref).transpose(0, 2, 3, 1)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5 * max(1.0, np.abs(ref).max()), rtol=0)


@settings(max_examples=8, deadline=None)
@given(st.randoms(use_true_random=False))
def test_prediction_does_not_depend_on_support_order(random):
    model = UniverSeg((4, 4, 4), rngs=nnx.Rngs(1))
    query, images, labels = random_inputs(3, 2, 5, 16, 16)
    order = list(range(5))
    random.shuffle(order)
    np.testing.assert_allclose(
        model(query, images[:, order], labels[:, order]), model(query, images, labels), atol=1e-5, rtol=0
    )


def test_a_shared_support_set_broadcasts_over_the_query_batch():
    model = UniverSeg((4, 4), rngs=nnx.Rngs(2))
    query, images, labels = random_inputs(4, 3, 2, 8, 8, support_batch=1)
    shared = model(query, images, labels)
    repeated = model(query, np.repeat(images, 3, 0), np.repeat(labels, 3, 0))
    np.testing.assert_allclose(shared, repeated, atol=1e-6, rtol=0)


def test_the_model_jits_and_has_finite_gradients():
    model = UniverSeg((4, 4, 4), rngs=nnx.Rngs(3))
    query, images, labels = random_inputs(5, 2, 3, 16, 16)
    target = (query > 0.5).astype(np.float32)

    @nnx.jit
    def loss_and_grad(model):
        def loss(model):
            return jnp.mean((jax.nn.sigmoid(model(query, images, labels)) - target) ** 2)

        return nnx.value_and_grad(loss)(model)

    value, grads = loss_and_grad(model)
    leaves = jax.tree.leaves(grads)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in leaves)


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = UniverSeg((8, 8, 8), dtype=jnp.bfloat16, rngs=nnx.Rngs(4))
    reference = UniverSeg((8, 8, 8), rngs=nnx.Rngs(4))
    query, images, labels = random_inputs(6, 1, 4, 32, 32)
    out = model(query, images, labels)
    assert out.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    expected = reference(query, images, labels)
    assert float(jnp.abs(out - expected).max()) < 0.05 * max(1.0, float(jnp.abs(expected).max()))


GOOD = random_inputs(0, 2, 3, 16, 16)


def replace(index, value):
    inputs = list(GOOD)
    inputs[index] = value
    return inputs


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        (replace(0, GOOD[0][..., 0]), ValueError, r"query must have shape \(B, H, W, 1\)"),
        (replace(0, np.repeat(GOOD[0], 3, -1)), ValueError, r"query must have shape \(B, H, W, 1\)"),
        (replace(1, GOOD[1][0]), ValueError, r"support_images must have shape"),
        (replace(2, np.repeat(GOOD[2], 2, -1)), ValueError, r"support_labels must have shape"),
        (replace(2, GOOD[2][:, :2]), ValueError, r"support_images .* and support_labels .* same shape"),
        (replace(1, GOOD[1][:, :0])[:2] + [GOOD[2][:, :0]], ValueError, r"empty.*S >= 1"),
        ([GOOD[0][:1], GOOD[1], GOOD[2]], ValueError, r"support batch size 2 must equal the query batch size 1"),
        ([GOOD[0][:, :8, :8], GOOD[1], GOOD[2]], ValueError, r"8x8"),
        ([x[..., :12, :12, :] for x in GOOD], ValueError, r"multiples of 8"),
        (replace(0, np.where(GOOD[0] > 0.9, np.nan, GOOD[0])), ValueError, r"query contains NaN or inf"),
        (replace(1, np.where(GOOD[1] > 0.9, np.inf, GOOD[1])), ValueError, r"support_images contains NaN"),
        (replace(0, GOOD[0] * 255), ValueError, r"query values must lie in \[0, 1\]"),
        (replace(2, GOOD[2] - 1), ValueError, r"support_labels values must lie in \[0, 1\]"),
        (replace(0, GOOD[0].tolist()), TypeError, r"query must be an array"),
        (replace(1, GOOD[1].astype(np.complex64)), TypeError, r"support_images must be a real-valued array"),
    ],
)
def test_bad_inputs_get_errors_naming_the_argument(inputs, error, match):
    model = UniverSeg((2, 2, 2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(error, match=match):
        model(*inputs)


@pytest.mark.parametrize(
    "encoder, decoder, match",
    [
        ([], None, "encoder_blocks must be a non-empty list"),
        (64, None, "encoder_blocks must be a non-empty list"),
        ([8, (8, 8, 8)], None, r"block spec must be an int or a \(cross_features, conv_features\) pair"),
        ([8, 0], None, "block features must be positive"),
        ([8, 8], [8, 8], "decoder_blocks has 2 blocks but only 1 skip levels exist"),
    ],
)
def test_bad_block_specs_are_refused(encoder, decoder, match):
    with pytest.raises(ValueError, match=match):
        UniverSeg(encoder, decoder)


def test_rematerialised_blocks_give_the_same_gradients():
    query, images, labels = random_inputs(7, 2, 3, 16, 16)

    def gradients(remat):
        model = UniverSeg((4, 4, 4), remat=remat, rngs=nnx.Rngs(5))
        graphdef, params = nnx.split(model)

        def loss(p):
            return jnp.mean(jax.nn.sigmoid(nnx.merge(graphdef, p)(query, images, labels)))

        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
        assert ("remat" in jaxpr or "checkpoint" in jaxpr) == remat
        return jax.jit(jax.grad(loss))(params)

    plain, remat = gradients(False), gradients(True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
