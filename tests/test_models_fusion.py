"""Fusion leaders, their building blocks and the v1 discriminator: shapes, ranges, inverses, sizes.

Models are built once per configuration and applied under ``jit``: on a shared CPU, eager
initialisation and op-by-op dispatch of these graphs cost far more than one compile.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models import count_params, create, split_module
from fuse4seg_jax.models.frequency_decoupled import FrequencyDecoupledFusion, min_max_per_image
from fuse4seg_jax.models.inn import CouplingStack, haar_squeeze, haar_unsqueeze
from fuse4seg_jax.models.restormer import MDTA, ChannelLayerNorm

TINY = {
    "frequency_decoupled": dict(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, inn_layers=2),
    "cross_attention": dict(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, patch=4),
    "caf_dense": dict(width=4, growth=4, dense_layers=2, blocks=3),
    "fuse4seg_v1": dict(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, inn_layers=1, patch=4),
}


def _images(shape, seed=1):
    return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


@functools.cache
def _fusion(name, n):
    return create("fusion", name, key=jax.random.key(0), num_modalities=n, **TINY[name])


@functools.partial(jax.jit, static_argnums=0, static_argnames="method")
def _apply(model, params, x, method=None):
    return model.apply(params, x, method=method)


# One spatial size per modality count keeps compiles few while covering odd and even sides;
# each extra compile costs tens of seconds on the shared CPU, so N = 3, 4 run with -m slow.
slow = pytest.mark.slow
SHAPES = [(2, (6, 6)), pytest.param(3, (5, 7), marks=slow), pytest.param(4, (4, 5), marks=slow)]


@pytest.mark.parametrize("n, hw", SHAPES)
def test_frequency_decoupled_shapes_and_min_max(n, hw):
    model, params = _fusion("frequency_decoupled", n)
    out = _apply(model, params, _images((2, *hw, n)))
    assert out["fused"].shape == (2, *hw, 1)
    assert out["low"].shape == out["high"].shape == (n, 2, *hw, 8)
    np.testing.assert_array_equal(jnp.min(out["fused"], axis=(1, 2, 3)), [0.0, 0.0])
    np.testing.assert_array_equal(jnp.max(out["fused"], axis=(1, 2, 3)), [1.0, 1.0])


@slow
def test_frequency_decoupled_low_high_are_per_modality_encodings():
    model, params = _fusion("frequency_decoupled", 3)
    x = _images((2, 5, 7, 3))
    out = _apply(model, params, x)
    low, high = _apply(model, params, x[..., 1:2], method="encode")
    np.testing.assert_allclose(out["low"][1], low, atol=1e-5)
    np.testing.assert_allclose(out["high"][1], high, atol=1e-5)


@slow
def test_frequency_decoupled_is_symmetric_in_the_modalities():
    # Fusion units act on the sum of the modalities' features, so their order cannot matter.
    model, params = _fusion("frequency_decoupled", 3)
    x = _images((2, 5, 7, 3))
    a = _apply(model, params, x)["fused"]
    b = _apply(model, params, x[..., ::-1])["fused"]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_reconstruct_is_an_autoencoder_in_unit_range():
    model, params = _fusion("frequency_decoupled", 2)
    out = _apply(model, params, _images((2, 5, 7, 1)), method="reconstruct")
    assert out["image"].shape == (2, 5, 7, 1)
    assert out["low"].shape == out["high"].shape == (2, 5, 7, 8)
    assert bool(jnp.all((out["image"] > 0) & (out["image"] < 1)))


@pytest.mark.parametrize("n", [2, pytest.param(3, marks=slow), pytest.param(4, marks=slow)])
def test_cross_attention_shapes_and_attention_rows(n):
    model, params = _fusion("cross_attention", n)
    out = _apply(model, params, _images((2, 8, 12, n)))
    assert out["fused"].shape == (2, 8, 12, 1)
    tokens = (8 // 4) * (12 // 4)
    assert out["attention"].shape == (n - 1, 2, 2, tokens, tokens)
    np.testing.assert_allclose(jnp.sum(out["attention"], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(jnp.min(out["fused"], axis=(1, 2, 3)), [0.0, 0.0])
    np.testing.assert_array_equal(jnp.max(out["fused"], axis=(1, 2, 3)), [1.0, 1.0])


def test_cross_attention_rejects_sizes_off_the_patch_grid():
    model, params = _fusion("cross_attention", 2)
    with pytest.raises(ConfigError, match=r"7 x 8 is not a multiple of patch \(4\)"):
        _apply(model, params, _images((1, 7, 8, 2)))


@pytest.mark.parametrize("n, hw", SHAPES)
def test_caf_dense_shapes_and_range(n, hw):
    model, params = _fusion("caf_dense", n)
    fused = _apply(model, params, _images((2, *hw, n)))["fused"]
    assert fused.shape == (2, *hw, 1)
    assert bool(jnp.all((fused > 0) & (fused < 1)))


@pytest.mark.parametrize("name", sorted(TINY))
def test_fusion_rejects_one_modality_and_wrong_channel_count(name):
    with pytest.raises(ConfigError, match="num_modalities must be >= 2"):
        create("fusion", name, key=jax.random.key(0), num_modalities=1, **TINY[name])
    model, params = _fusion(name, 3)
    with pytest.raises(ConfigError, match=r"\(B, H, W, 3\)"):
        _apply(model, params, _images((1, 8, 8, 2)))


def test_frequency_decoupled_rejects_images_too_small_to_reflect_pad():
    model, params = _fusion("frequency_decoupled", 2)
    with pytest.raises(ConfigError, match="at least 2 x 2"):
        _apply(model, params, _images((1, 1, 5, 2)))


def test_frequency_decoupled_rejects_bad_widths():
    with pytest.raises(ConfigError, match="divisible by heads"):
        create("fusion", "frequency_decoupled", key=jax.random.key(0), num_modalities=2, dim=6, heads=4)
    with pytest.raises(ConfigError, match="even"):
        create("fusion", "frequency_decoupled", key=jax.random.key(0), num_modalities=2, dim=9, heads=3)


@pytest.mark.parametrize("hw", [(8, 8), (7, 5)])
def test_discriminator_gives_one_logit_per_image(hw):
    model, params = create("discriminator", "fuse4seg_v1", key=jax.random.key(0), width=4, depth=2)
    assert _apply(model, params, _images((3, *hw, 1))).shape == (3,)


def test_min_max_per_image_hand_values_and_constant_guard():
    x = jnp.array([[1.0, 3.0], [2.0, 5.0]]).reshape(1, 2, 2, 1)
    x = jnp.concatenate([x, jnp.full_like(x, 0.7)])
    out = min_max_per_image(x)
    np.testing.assert_allclose(out[0, ..., 0], [[0.0, 0.5], [0.25, 1.0]])
    np.testing.assert_array_equal(out[1], jnp.zeros((2, 2, 1)))


def test_coupling_inverse_recovers_input_float32():
    model, params = split_module(CouplingStack(16, 3, rngs=nnx.Rngs(0)))
    x = _images((2, 5, 6, 16))
    y = _apply(model, params, x)
    assert float(jnp.max(jnp.abs(y - x))) > 0.1
    np.testing.assert_allclose(_apply(model, params, y, method="inverse"), x, atol=2e-5)


def test_haar_squeeze_is_the_orthonormal_2x2_haar_transform_and_inverts():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3) ** 1.5 / 50
    y = np.asarray(haar_squeeze(jnp.asarray(x)))
    assert y.shape == (2, 2, 3, 12)
    block = x[1, 2:4, 4:6, 2]  # the last 2 x 2 block of channel 2 of the second image
    (a, b), (c, d) = block
    hand = 0.5 * np.array([a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d])
    np.testing.assert_allclose(y[1, 1, 2, 2::3], hand, rtol=1e-6)
    # orthonormal: energy is kept, and the inverse gives the pixels back
    np.testing.assert_allclose(np.sum(y**2), np.sum(x**2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(haar_unsqueeze(jnp.asarray(y))), x, rtol=1e-6, atol=1e-6)


def test_haar_coupling_inverts_and_the_haar_leader_rejects_odd_sizes():
    model, params = split_module(CouplingStack(4, 1, haar=True, rngs=nnx.Rngs(0)))
    assert params["layers"][0]["mix"]["kernel"].shape == (1, 1, 16, 16)  # couplings on 4C
    x = _images((1, 6, 4, 4))
    y = _apply(model, params, x)
    assert y.shape == x.shape and float(jnp.max(jnp.abs(y - x))) > 0.1
    np.testing.assert_allclose(_apply(model, params, y, method="inverse"), x, atol=2e-5)
    leader, leader_params = create(
        "fusion",
        "frequency_decoupled",
        key=jax.random.key(0),
        num_modalities=2,
        inn_haar=True,
        **TINY["frequency_decoupled"],
    )
    with pytest.raises(ConfigError, match="even height and width"):
        leader.apply(leader_params, _images((1, 6, 5, 2)))


@slow
def test_coupling_inverse_is_exact_in_float64():
    with jax.enable_x64(True):
        stack = CouplingStack(8, 3, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(stack)
        stack = nnx.merge(graphdef, jax.tree.map(lambda a: a.astype(jnp.float64), state))
        x = jax.random.uniform(jax.random.key(1), (1, 4, 5, 8), jnp.float64)
        np.testing.assert_allclose(stack.inverse(stack(x)), x, atol=1e-12)


def test_channel_layer_norm_matches_hand_computation():
    norm = ChannelLayerNorm(4, rngs=nnx.Rngs(0))
    x = jnp.array([1.0, 2.0, 3.0, 6.0]).reshape(1, 1, 1, 4)
    mean, var = 3.0, (4.0 + 1.0 + 0.0 + 9.0) / 4  # biased variance
    expected = (np.array([1.0, 2.0, 3.0, 6.0]) - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(norm(x)[0, 0, 0], expected, rtol=1e-6)


def test_mdta_mixes_channels_not_pixels_globally():
    # Channel attention is global over pixels: changing one far pixel changes the output at
    # another pixel even though every convolution in MDTA is at most 3x3.
    attention = MDTA(8, 2, rngs=nnx.Rngs(0))
    x = _images((1, 9, 9, 8))
    y = x.at[0, 8, 8].add(1.0)
    assert float(jnp.max(jnp.abs(attention(x)[0, 0, 0] - attention(y)[0, 0, 0]))) > 0


def _restormer(c, h):
    return 10 * c * c + 67 * c + h


def _base(c, h):
    return 88 * c * c + 40 * c + h


def _coupling(c):
    return 4 * c * c + 28 * c


def _frequency_decoupled_count(c, h, enc, dec, inn):
    encoder = 9 * c + enc * _restormer(c, h) + _base(c, h) + inn * _coupling(c)
    decoder = 2 * c * c + dec * _restormer(c, h) + 9 * c * (c // 2) + 9 * (c // 2)
    return encoder + _base(c, h) + _coupling(c) + decoder


@pytest.mark.parametrize(
    "sizes", [dict(dim=8, heads=2, encoder_blocks=1, decoder_blocks=2, inn_layers=2), {}]
)
def test_frequency_decoupled_parameter_count_matches_the_architecture(sizes):
    full = dict(dim=64, heads=8, encoder_blocks=4, decoder_blocks=4, inn_layers=3) | sizes
    module = nnx.eval_shape(lambda: FrequencyDecoupledFusion(2, rngs=nnx.Rngs(0), **full))
    count = count_params(nnx.state(module, nnx.Param))
    assert count == _frequency_decoupled_count(
        full["dim"],
        full["heads"],
        full["encoder_blocks"],
        full["decoder_blocks"],
        full["inn_layers"],
    )
    if not sizes:  # the paper sizes land near CDDFuse's ~1.2 M (encoder + decoder + fusion units)
        assert abs(count - 1.2e6) / 1.2e6 < 0.02


@pytest.mark.parametrize(
    "family, name, x",
    [
        pytest.param("fusion", "frequency_decoupled", (2, 6, 6, 2), marks=slow),
        pytest.param("fusion", "cross_attention", (2, 8, 12, 2), marks=slow),
        pytest.param("fusion", "fuse4seg_v1", (2, 8, 12, 2), marks=slow),
        ("fusion", "caf_dense", (2, 6, 6, 2)),
        ("discriminator", "fuse4seg_v1", (3, 8, 8, 1)),
    ],
)
def test_gradients_are_finite_and_reach_every_parameter(family, name, x):
    if family == "fusion":
        model, params = _fusion(name, x[-1])
    else:
        model, params = create(family, name, key=jax.random.key(0), width=4, depth=2)
    images = _images(x)

    def loss(p):
        out = model.apply(p, images)
        target = out["fused"] if family == "fusion" else out
        return jnp.sum(jnp.square(target - 0.3))

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(bool(jnp.any(g != 0)) for g in leaves) == len(leaves)


def test_split_module_keeps_only_parameters():
    _, params = split_module(CouplingStack(4, 1, rngs=nnx.Rngs(0)))
    assert count_params(params) == _coupling(4)


@pytest.mark.slow
def test_frequency_decoupled_remat_keeps_values_and_halves_backward_memory():
    sizes = {"dim": 16, "heads": 2, "encoder_blocks": 1, "decoder_blocks": 1, "inn_layers": 1}
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 2))
    results = {}
    for remat in (False, True):
        model, params = create(
            "fusion", "frequency_decoupled", key=jax.random.key(0), num_modalities=2, remat=remat, **sizes
        )
        compiled = (
            jax.jit(jax.grad(lambda p, x, model=model: jnp.sum(model.apply(p, x)["fused"] ** 2)))
            .lower(params, x)
            .compile()
        )
        results[remat] = (compiled.memory_analysis().temp_size_in_bytes, compiled(params, x))
    assert results[True][0] <= 0.6 * results[False][0], (results[True][0], results[False][0])
    for a, b in zip(jax.tree.leaves(results[True][1]), jax.tree.leaves(results[False][1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.max(np.abs(b)))  # float32 rounding
