"""Memory-lean layers: the same numbers as the plain formulas, and bounded compiled temporaries.

The bounds are XLA:CPU's compiled temporaries of forward+backward (deterministic for a given
jaxlib), in activations of one block's input, so a change that stores more fails here
(``docs/conventions.md#memory``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bilevel import curvature, schedule
from fuse4seg_jax.models import create, restormer, smfnet
from fuse4seg_jax.models import pointwise as pointwise_module
from fuse4seg_jax.models.convnext_unet import ConvNeXtBlock
from fuse4seg_jax.models.inn import CouplingStack
from fuse4seg_jax.models.pointwise import PatchConv, PatchConvTranspose, PointwiseConv, PointwiseLinear
from fuse4seg_jax.models.same_conv import SameConv


def _value_and_grads(module: nnx.Module, x: jax.Array):
    graphdef, state = nnx.split(module)

    def loss(state, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, state)(x)))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(state, x)


def _assert_close(a, b, scale=1e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=0, atol=scale * max(1.0, float(np.max(np.abs(v)))))


_DENSE_LAYERS = {
    "conv": (lambda r: PointwiseConv(6, 5, rngs=r), lambda r: nnx.Conv(6, 5, (1, 1), rngs=r)),
    "linear": (lambda r: PointwiseLinear(6, 5, rngs=r), lambda r: nnx.Linear(6, 5, rngs=r)),
    "patch": (
        lambda r: PatchConv(6, 5, 2, rngs=r),
        lambda r: nnx.Conv(6, 5, (2, 2), strides=(2, 2), padding="VALID", rngs=r),
    ),
    "patch_transpose": (
        lambda r: PatchConvTranspose(6, 5, 2, rngs=r),
        lambda r: nnx.ConvTranspose(6, 5, (2, 2), strides=(2, 2), padding="VALID", rngs=r),
    ),
    "same_3x3": (lambda r: SameConv(6, 5, (3, 3), rngs=r), lambda r: nnx.Conv(6, 5, (3, 3), rngs=r)),
    "same_2x2": (lambda r: SameConv(6, 5, (2, 2), rngs=r), lambda r: nnx.Conv(6, 5, (2, 2), rngs=r)),
}


@pytest.mark.parametrize("kind", sorted(_DENSE_LAYERS))
def test_dense_layers_match_flax_values_and_gradients(kind):
    ours, reference = (make(nnx.Rngs(0)) for make in _DENSE_LAYERS[kind])
    ours.bias[...] = reference.bias[...] = jnp.linspace(-1.0, 1.0, 5)
    x = jax.random.normal(jax.random.key(1), (2, 4, 6, 6))
    _assert_close(_value_and_grads(ours, x), _value_and_grads(reference, x))


_PIECES = {
    "restormer_block": lambda r: restormer.RestormerBlock(8, 2, rngs=r),
    "base_block": lambda r: restormer.base_block(8, 2, rngs=r),
    "coupling": lambda r: CouplingStack(8, 1, rngs=r),
    "smfnet_block": lambda r: smfnet.transformer_block(8, 2, 2.0, rngs=r),
    "convnext_v2": lambda r: ConvNeXtBlock(8, kernel_size=3, block="v2", rngs=r),
}


@pytest.mark.parametrize(
    "name",
    # the Restormer and SMFNet blocks hold every kind of checkpointed piece but the bottleneck's
    ["restormer_block", "smfnet_block"]
    + [pytest.param(n, marks=pytest.mark.slow) for n in ("base_block", "coupling", "convnext_v2")],
)
def test_rematerialised_pieces_keep_values_and_gradients(name, monkeypatch):
    module = _PIECES[name](nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 5, 8))
    lean = _value_and_grads(module, x)
    # the plain formulas: no checkpointing, JAX's own rule for the pointwise layers
    monkeypatch.setattr(schedule, "checkpoint", lambda fn: fn)
    monkeypatch.setattr(pointwise_module, "pointwise", pointwise_module._matmul)
    _assert_close(lean, _value_and_grads(module, x))


_SMALL = {
    ("segmentation", "convnext_unet"): {
        "widths": (4, 8),
        "depths": (1, 1),
        "bottleneck_heads": 2,
        "bottleneck_blocks": 1,
        "kernel_size": 3,
    },
    ("fusion", "frequency_decoupled"): {
        "num_modalities": 2,
        "dim": 4,
        "heads": 1,
        "encoder_blocks": 1,
        "decoder_blocks": 1,
        "inn_layers": 1,
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("family, name", sorted(_SMALL))
def test_remat_keeps_values_gradients_and_hessian_vector_products(family, name):
    """Both remat keys: the same numbers, and the implicit solvers' forward-over-reverse products run."""
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 2 if family == "fusion" else 1))
    results = []
    for remat in (False, True):
        model, params = create(family, name, key=jax.random.key(0), remat=remat, **_SMALL[family, name])

        def loss(params, x, model=model):
            out = model.apply(params, x)
            return jnp.mean(jnp.square(out["fused"] if family == "fusion" else out))

        direction = jax.tree.map(jnp.ones_like, params)
        hvp = jax.jit(lambda p, x, u, loss=loss: curvature.hvp(loss, p, x, u))(params, x, direction)
        results.append((jax.value_and_grad(loss)(params, x), hvp))
    _assert_close(results[1], results[0], scale=1e-4)


def _temporaries(make, n_blocks: int) -> float:
    blocks = nnx.List([make(nnx.Rngs(i)) for i in range(n_blocks)])
    graphdef, state = nnx.split(blocks)

    def loss(state, x):
        for block in nnx.merge(graphdef, state):
            x = block(x)
        return jnp.sum(jnp.sin(x))

    x = jax.ShapeDtypeStruct((2, 32, 32, 64), jnp.float32)
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(state, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes / (2 * 32 * 32 * 64 * 4)


@pytest.mark.parametrize(
    "name, most",
    # three blocks of width 64 at 2 x 32 x 32; before the memory-lean layers: 109, 91, 80, 91
    [
        ("restormer_block", 78),
        ("convnext_v2", 57),
        pytest.param("coupling", 30, marks=pytest.mark.slow),
        pytest.param("smfnet_block", 53, marks=pytest.mark.slow),
    ],
)
def test_three_blocks_keep_few_activations(name, most):
    make = {
        "restormer_block": lambda r: restormer.RestormerBlock(64, 8, rngs=r),
        "coupling": lambda r: CouplingStack(64, 1, rngs=r),
        "smfnet_block": lambda r: smfnet.transformer_block(64, 8, 2.0, rngs=r),
        "convnext_v2": lambda r: ConvNeXtBlock(64, block="v2", rngs=r),
    }[name]
    activations = _temporaries(make, 3)
    assert activations <= most, activations
