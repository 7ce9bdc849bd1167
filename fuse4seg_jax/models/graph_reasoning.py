"""SMFNet's Graph Reasoning module (SMFNet sec. 2.2.3), generalised to N modalities, NHWC.

Nodes are multi-scale views of each modality's features; edges carry sigmoid-gated messages
computed from node differences; nodes are updated by a convolutional GRU. For modality ``m`` and
pooling factor ``s``, node ``v[m, s]`` is a pyramid-pooling branch (adaptive average pooling to
``ceil(H/s) x ceil(W/s)`` bins, 1x1 conv, bilinear resize back to ``H x W``), so every node is
``(B, H, W, C)`` (paper eq. 11). Edges connect

- nodes of the same modality at different scales (the paper's ``c_i <-> c_j``), and
- nodes of different modalities at the same scale (``c_i <-> d_i``; for N modalities, every pair).

Edge ``k -> l``: ``e = W (v_l - v_k)`` with a 1x1 conv ``W`` per edge type (eq. 12-13); message to
``l``: the sigmoid-gated neighbours ``sigmoid(e) * v_k`` (eq. 15). The paper sums them; we average
within each edge type (then add the two types) so that the message scale does not grow with N or
with the number of scales. A GRU whose gates are 1x1 convs (shared by all nodes) takes the message
as input and the node as hidden state (eq. 16). After ``steps`` rounds, each modality's nodes are
concatenated and merged by a 1x1 conv.

The paper gives no sizes: factors (1, 2, 4) (the factor-1 node keeps full-resolution detail, as
the module also supplies low-level detail) and 2 message-passing steps are our choices
(``docs/conventions.md#architectures``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax


def _adaptive_average_matrix(size: int, bins: int) -> jax.Array:
    """``(bins, size)`` matrix; row i averages ``[floor(i size/bins), ceil((i + 1) size/bins))``.

    The bins of PyTorch's adaptive average pooling: they overlap when ``size`` is not a multiple
    of ``bins`` and are never empty.
    """
    rows = []
    for i in range(bins):
        start, stop = (i * size) // bins, -(-((i + 1) * size) // bins)
        rows.append([1.0 / (stop - start) if start <= j < stop else 0.0 for j in range(size)])
    return jnp.asarray(rows, jnp.float32)


def pyramid_pool(x: jax.Array, factor: int) -> jax.Array:
    """Adaptive average pooling of ``x: (B, H, W, C)`` to ``(B, ceil(H/f), ceil(W/f), C)``."""
    if factor == 1:
        return x
    _, h, w, _ = x.shape
    rows = _adaptive_average_matrix(h, math.ceil(h / factor))
    cols = _adaptive_average_matrix(w, math.ceil(w / factor))
    return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols)


def gated_messages(nodes: jax.Array, edge: nnx.Linear, axis: int) -> jax.Array:
    """Mean over neighbours k != l along ``axis`` of ``sigmoid(W (v_l - v_k)) * v_k``.

    ``W`` is linear, so ``W (v_l - v_k) = W v_l - W v_k`` and is computed once per node. The sum
    over senders ``k`` is a Python loop (the axis holds a handful of scales or modalities): the
    equivalent broadcast-and-reduce over a ``(k, l)`` pair of axes makes XLA:CPU (jaxlib 0.10.2)
    emit a program that segfaults when the other axis has a different length (e.g. 3 scales, 2
    modalities); see ``tests/test_models_smfnet.py::test_graph_runs_compiled_at_default_sizes``.
    """
    count = nodes.shape[axis]
    projected = edge(nodes)
    total = sum(
        jax.nn.sigmoid(projected - lax.index_in_dim(projected, k, axis)) * lax.index_in_dim(nodes, k, axis)
        for k in range(count)
    )
    # the k == l term has gate sigmoid(0) = 1/2; a node sends no message to itself.
    return (total - 0.5 * nodes) / (count - 1)


class ConvGRU(nnx.Module):
    """GRU cell with 1x1-conv gates: hidden ``h`` (the node), input ``m`` (its message).

    ``z = sigmoid(Wz [h, m])``, ``r = sigmoid(Wr [h, m])``, ``n = tanh(Wn [r h, m])``,
    ``h' = (1 - z) h + z n``. Call: ``h, m: (..., C) -> (..., C)``.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.gates = nnx.Linear(2 * dim, 2 * dim, rngs=rngs)
        self.candidate = nnx.Linear(2 * dim, dim, rngs=rngs)

    def __call__(self, h: jax.Array, m: jax.Array) -> jax.Array:
        z, r = jnp.split(jax.nn.sigmoid(self.gates(jnp.concatenate([h, m], axis=-1))), 2, axis=-1)
        n = jnp.tanh(self.candidate(jnp.concatenate([r * h, m], axis=-1)))
        return (1.0 - z) * h + z * n


class GraphReasoning(nnx.Module):
    """Cross-modality graph reasoning over multi-scale nodes.

    Arguments:
        dim: feature channels ``C`` of every node.
        factors: pooling factors of the node scales (at least 2, distinct, each >= 1).
        steps: rounds of message passing and GRU update.
        rngs: parameter initialisation.

    Call: ``x: (N, B, H, W, C)`` (N >= 2 modalities' features) ``-> (N, B, H, W, C)``, the
    interaction features of each modality. Any ``H, W >= 1``.
    """

    def __init__(self, dim: int, factors: Sequence[int], steps: int, *, rngs: nnx.Rngs):
        self.factors = tuple(factors)
        self.steps = steps
        self.node_embed = nnx.List([nnx.Linear(dim, dim, rngs=rngs) for _ in self.factors])
        self.edge_scale = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.edge_modality = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.update = ConvGRU(dim, rngs=rngs)
        self.merge = nnx.Linear(len(self.factors) * dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, b, h, w, c = x.shape
        folded = x.reshape(n * b, h, w, c)
        nodes = jnp.stack(
            [
                jax.image.resize(embed(pyramid_pool(folded, f)), folded.shape, "bilinear")
                for f, embed in zip(self.factors, self.node_embed, strict=True)
            ]
        ).reshape(len(self.factors), n, b, h, w, c)  # (S, N, B, H, W, C)
        for _ in range(self.steps):
            messages = gated_messages(nodes, self.edge_scale, axis=0) + gated_messages(
                nodes, self.edge_modality, axis=1
            )
            nodes = self.update(nodes, messages)
        per_modality = jnp.moveaxis(nodes, 0, -2).reshape(n, b, h, w, -1)
        return self.merge(per_modality)
