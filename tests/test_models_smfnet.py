"""SMFNet-style fusion leader and its graph reasoning: shapes, range, symmetry, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fuse4seg_jax import models
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.graph_reasoning import gated_messages, pyramid_pool

TINY = dict(dim=4, heads=2, shallow_blocks=1, base_blocks=1, decoder_blocks=1, inn_layers=1)


def tiny(num_modalities):
    return models.create("fusion", "smfnet", key=jax.random.key(0), num_modalities=num_modalities, **TINY)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("size", [(7, 6), (8, 8)])
def test_shapes_for_n_modalities_odd_and_even(n, size):
    model, params = tiny(n)
    x = jax.ShapeDtypeStruct((2, *size, n), jnp.float32)
    out = jax.eval_shape(model.apply, params, x)
    assert out["fused"].shape == (2, *size, 1)
    for key in ("low", "high", "interaction"):
        assert out[key].shape == (n, 2, *size, 4)
    stage_one = jax.eval_shape(lambda p, x: model.apply(p, x, method="autoencode"), params, x)
    assert stage_one["images"].shape == (n, 2, *size, 1)


def test_too_small_image_is_a_config_error():
    model, params = tiny(2)
    with pytest.raises(ConfigError, match="at least 2 x 2"):
        jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((1, 1, 5, 2), jnp.float32))


def test_wrong_modality_count_is_a_config_error():
    model, params = tiny(3)
    with pytest.raises(ConfigError, match=r"\(B, H, W, 3\)"):
        jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((1, 6, 6, 2), jnp.float32))


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (dict(num_modalities=1), "num_modalities must be >= 2"),
        (dict(num_modalities=2, dim=6, heads=4), r"dim \(6\) must be divisible by heads \(4\)"),
        (dict(num_modalities=2, graph_factors=(2,)), "graph_factors"),
        (dict(num_modalities=2, graph_factors=(1, 1)), "graph_factors"),
    ],
)
def test_bad_sizes_are_config_errors(sizes, message):
    with pytest.raises(ConfigError, match=message):
        models.create("fusion", "smfnet", key=jax.random.key(0), **{**TINY, **sizes})


@pytest.fixture(scope="module")
def three_modalities():
    """One compiled forward and gradient of a tiny 3-modality SMFNet on odd-sized images."""
    model, params = tiny(3)
    x = jax.random.uniform(jax.random.key(1), (2, 7, 5, 3))

    def loss(p, x):
        out = model.apply(p, x)
        target = jnp.max(x, axis=-1, keepdims=True)
        return jnp.mean(jnp.abs(out["fused"] - target)), out

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    return value_and_grad, params, x


def test_fused_image_spans_exactly_zero_to_one(three_modalities):
    value_and_grad, params, x = three_modalities
    (_, out), _ = value_and_grad(params, x)
    fused = np.asarray(out["fused"])
    np.testing.assert_allclose(fused.min(axis=(1, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(fused.max(axis=(1, 2, 3)), 1.0, atol=1e-6)


def test_modality_order_does_not_matter(three_modalities):
    # Shared branches, summed fusion, mean-of-others queries and a complete modality graph make
    # the fused image invariant, and the features equivariant, under a permutation of modalities.
    value_and_grad, params, x = three_modalities
    perm = np.array([2, 0, 1])
    (_, out), _ = value_and_grad(params, x)
    (_, permuted), _ = value_and_grad(params, x[..., perm])
    np.testing.assert_allclose(permuted["fused"], out["fused"], atol=1e-5)
    for key in ("low", "high", "interaction"):
        np.testing.assert_allclose(permuted[key], out[key][perm], atol=1e-5)


def test_gradients_are_finite_and_reach_every_parameter(three_modalities):
    value_and_grad, params, x = three_modalities
    (value, _), grads = value_and_grad(params, x)
    assert np.isfinite(float(value))
    leaves = jax.tree.leaves(jax.device_get(grads))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.any(g != 0) for g in leaves)


def test_pyramid_pool_matches_adaptive_average_bins():
    x = jnp.arange(12.0).reshape(1, 3, 4, 1)
    pooled = pyramid_pool(x, 2)[0, ..., 0]
    # rows 3 -> 2 bins: [0, 2) and [1, 3); columns 4 -> 2 bins: [0, 2) and [2, 4).
    rows = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    expected = [
        [np.mean([r[c0:c1] for r in rows[r0:r1]]) for c0, c1 in ((0, 2), (2, 4))]
        for r0, r1 in ((0, 2), (1, 3))
    ]
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    assert pyramid_pool(x, 1) is x


def test_gated_messages_by_hand():
    # Identity edge projection: the message to node l is mean_{k != l} sigmoid(v_l - v_k) * v_k.
    edge = nnx.Linear(1, 1, use_bias=False, kernel_init=nnx.initializers.ones, rngs=nnx.Rngs(0))
    v = jnp.array([[0.5], [-1.0], [2.0]])
    messages = gated_messages(v, edge, axis=0)
    s = jax.nn.sigmoid
    expected = [
        (s(0.5 + 1.0) * -1.0 + s(0.5 - 2.0) * 2.0) / 2,
        (s(-1.0 - 0.5) * 0.5 + s(-1.0 - 2.0) * 2.0) / 2,
        (s(2.0 - 0.5) * 0.5 + s(2.0 + 1.0) * -1.0) / 2,
    ]
    np.testing.assert_allclose(messages[:, 0], expected, rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 1])
def test_gated_messages_compiled_match_numpy_on_unequal_axes(axis):
    # (scales 3, modalities 2, ...): the shape the default graph uses. A broadcast-and-reduce
    # form of this sum segfaulted in XLA:CPU at exactly these unequal axis lengths.
    edge = nnx.Linear(5, 5, use_bias=False, rngs=nnx.Rngs(0))
    v = jax.random.normal(jax.random.key(1), (3, 2, 2, 4, 4, 5))
    messages = jax.jit(lambda v: v * gated_messages(v, edge, axis=axis))(v)
    w, x = np.asarray(edge.kernel.value, np.float64), np.asarray(v, np.float64)
    p = x @ w
    gates = 1 / (1 + np.exp(-(np.expand_dims(p, axis) - np.expand_dims(p, axis + 1))))
    total = np.sum(gates * np.expand_dims(x, axis + 1), axis=axis)
    expected = x * (total - 0.5 * x) / (x.shape[axis] - 1)
    np.testing.assert_allclose(messages, expected, rtol=1e-5, atol=1e-6)


def test_graph_runs_compiled_at_default_sizes():
    model, params = models.create(
        "fusion", "smfnet", key=jax.random.key(0), num_modalities=2, **{**TINY, "dim": 8}
    )
    x = jax.random.uniform(jax.random.key(1), (1, 8, 8, 2))
    fused = jax.jit(model.apply)(params, x)["fused"]
    with jax.disable_jit():
        eager = model.apply(params, x)["fused"]
    np.testing.assert_allclose(fused, eager, atol=1e-5)


def test_exact_zero_background_keeps_the_gradient_bounded(three_modalities):
    # Skull-stripped MRI is exactly 0 outside the brain. The embedding's bias keeps the features
    # there off the channel-constant vectors where each LayerNorm's Jacobian is 1/sqrt(eps); with
    # a zero bias the chain of LayerNorms multiplies the gradient by ~1000 even at 7 x 5 pixels.
    value_and_grad, params, x = three_modalities
    zeroed = np.array(x)
    zeroed[:, 2:, 2:] = 0.0

    def grad_norm(p, images):  # in numpy: no program besides the fixture's is compiled
        grads = jax.tree.leaves(jax.device_get(value_and_grad(p, images)[1]))
        return float(np.sqrt(sum(np.sum(np.square(g)) for g in grads)))

    assert grad_norm(params, zeroed) < 10 * grad_norm(params, x)
    no_bias = {**params, "embed": {**params["embed"], "bias": np.zeros_like(params["embed"]["bias"])}}
    assert grad_norm(no_bias, zeroed) > 100 * grad_norm(no_bias, x)
