"""Grouped (and depthwise) convolution as a sum of shifted copies of the input.

XLA:CPU lowers ``feature_group_count`` convolutions to a slow generic path. On (8, 64, 64, 32)
inputs, the sum of shifted copies is faster than XLA's grouped convolution by 33x forward / 26x
forward+backward for a 3x3 depthwise kernel, 54x / 27x for a 7x7 one, and 13x / 97x for 3x3 with
2 channels per group (``python -m benchmarks.grouped_conv``, 2-core CPU, jaxlib 0.10.2). Every fusion leader
and the ConvNeXt follower are built on such convolutions, so on CPU we compute them as shifted
sums. On every other platform (GPU, TPU) the native grouped convolution is used: ``lax.
platform_dependent`` picks the branch when the program is lowered, so one traced model serves both.
Differentiated as written, the shifted sum would keep every shifted copy for the backward pass:
the paper-size frequency-decoupled leader's forward+backward on 2 x 224 x 224 needed 40 GiB of
XLA:CPU temporaries. :func:`shifted_sum_conv` has its own reverse rule that keeps only its
unpadded input and kernel and reads the shifted copies inside the kernel gradient's sums
(``docs/conventions.md#memory``). Its output and its cotangent are stored once
(``bilevel.schedule.materialize``): fused into their readers, the ``kh * kw`` taps were recomputed
inside each of them, which had made the paper-size leader's forward+backward twice as slow
(``docs/conventions.md#speed-on-cpu``).

:class:`GroupedConv` has the parameters of ``nnx.Conv(..., feature_group_count=groups)`` (same
names, shapes and initialisers) and computes the same cross-correlation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from bilevel.schedule import after, materialize
from fuse4seg_jax.models.channel_sum import add_bias, channel_sum

_DEFAULT_KERNEL_INIT = jax.nn.initializers.lecun_normal()


# Groups with at most this many (input x output) channel pairs are multiplied out element-wise,
# wider ones by a matrix product per tap.
_ELEMENTWISE_PAIRS = 16


def _elementwise(kernel_shape: tuple[int, ...], groups: int) -> bool:
    per_group, c_out = kernel_shape[-2:]
    return per_group * (c_out // groups) <= _ELEMENTWISE_PAIRS


def _tap(window: jax.Array, tap: jax.Array, groups: int) -> jax.Array:
    """One kernel tap's share of the output.

    ``window: (B, H', W', C_in)`` (the pixels the tap meets), ``tap: (C_in / groups, C_out)``.
    Narrow groups (depthwise: one pair) are element-wise products, which XLA fuses with the other
    taps' into one loop; a matrix product per tap would copy its operands out.
    """
    per_group, c_out = tap.shape
    b, h, w, _ = window.shape
    grouped = window.reshape(b, h, w, groups, per_group)
    taps = tap.reshape(per_group, groups, c_out // groups)
    if _elementwise(tap.shape, groups):
        mixed = sum(grouped[..., i, None] * taps[i] for i in range(per_group))
    else:
        mixed = jnp.einsum("bhwgi,igo->bhwgo", grouped, taps)
    return mixed.reshape(b, h, w, c_out)


def _tap_cotangent(
    window: jax.Array, cotangent: jax.Array, tap_shape: tuple[int, int], groups: int
) -> jax.Array:
    """One tap's gradient, ``(C_in / groups, C_out)``, from the pixels it met and the output's cotangent."""
    per_group, c_out = tap_shape
    out_per_group = c_out // groups
    b, h, w, _ = window.shape
    grouped = window.reshape(b, h, w, groups, per_group)
    grouped_cotangent = cotangent.reshape(b, h, w, groups, out_per_group)
    if _elementwise(tap_shape, groups):
        pairs = (grouped[..., :, None] * grouped_cotangent[..., None, :]).reshape(b, h, w, -1)
        per_pair = channel_sum(pairs).reshape(groups, per_group, out_per_group)
    else:
        per_pair = jnp.einsum("bhwgi,bhwgo->gio", grouped, grouped_cotangent)
    return per_pair.transpose(1, 0, 2).reshape(tap_shape)


def _window(x: jax.Array, kernel_shape: tuple[int, ...], i: int, j: int) -> jax.Array:
    """The input pixels that kernel tap ``(i, j)`` meets in a ``VALID`` correlation."""
    h_out, w_out = x.shape[1] - kernel_shape[0] + 1, x.shape[2] - kernel_shape[1] + 1
    return x[:, i : i + h_out, j : j + w_out, :]


def _shifted_sum(x: jax.Array, kernel: jax.Array, groups: int) -> jax.Array:
    kh, kw = kernel.shape[:2]
    elementwise = _elementwise(kernel.shape, groups)
    out = None
    for i in range(kh):
        for j in range(kw):
            window = _window(x, kernel.shape, i, j)
            if out is not None and not elementwise:
                # An element-wise sum is one fused loop; the matrix products' operands XLA:CPU
                # copies out, all at once unless each waits for the running sum.
                window = after(window, out)
            share = _tap(window, kernel[i, j], groups)
            out = share if out is None else out + share
    # stored, not recomputed tap by tap inside each reader (bilevel.schedule.materialize)
    return materialize(out)


def _zero_pad(x: jax.Array, pad: tuple[int, int]) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shifted_sum_conv(x: jax.Array, kernel: jax.Array, groups: int, pad: tuple[int, int]) -> jax.Array:
    """The CPU form: a grouped cross-correlation as a sum of ``kh * kw`` shifted copies.

    ``x`` is zero-padded by ``pad = (rows, columns)`` on each side first (``(0, 0)``: ``VALID``).
    Its reverse pass keeps only the unpadded ``x`` and ``kernel`` and recomputes the shifted
    copies once the output's cotangent exists, one at a time: differentiated as written it would
    keep every copy (``kh * kw`` activations per layer) from the forward to the backward pass.
    """
    return _shifted_sum(_zero_pad(x, pad), kernel, groups)


def _shifted_sum_fwd(x, kernel, groups, pad):
    # not `shifted_sum_conv`: a JVP of this rule (forward-over-reverse) must not meet the custom VJP
    return _shifted_sum(_zero_pad(x, pad), kernel, groups), (x, kernel)


def _shifted_sum_bwd(groups, pad, residuals, cotangent):
    # Without the ordering XLA may recompute the copies during the forward pass (bilevel.schedule).
    x, kernel = after(residuals, cotangent)
    x = _zero_pad(x, pad)
    kh, kw, per_group, c_out = kernel.shape
    # The input's gradient is a correlation too (the cotangent, padded, with the flipped kernel
    # whose per-group in/out roles are swapped), so it is one fused shifted sum; XLA:CPU's own
    # transpose of the shifted sum kept kh * kw padded partial sums.
    transposed = (
        jnp.flip(kernel, (0, 1))
        .reshape(kh, kw, per_group, groups, c_out // groups)
        .transpose(0, 1, 4, 3, 2)
        .reshape(kh, kw, c_out // groups, groups * per_group)
    )
    # padded to give the cotangent of the unpadded input directly
    x_cotangent = _shifted_sum(_zero_pad(cotangent, (kh - 1 - pad[0], kw - 1 - pad[1])), transposed, groups)
    # Each tap's kernel gradient sums one shifted copy times the cotangent over the pixels, which
    # is stored once rather than recomputed inside each of the kh * kw sums. Element-wise taps
    # read the copy inside their sum; a matrix product's operands XLA:CPU copies out, all at once
    # unless each waits for the previous tap's gradient.
    cotangent = materialize(cotangent)
    elementwise = _elementwise(kernel.shape, groups)
    taps, previous = [], cotangent
    for i in range(kh):
        for j in range(kw):
            window = _window(x, kernel.shape, i, j)
            previous = _tap_cotangent(
                window if elementwise else after(window, previous), cotangent, kernel.shape[2:], groups
            )
            taps.append(previous)
    return x_cotangent, jnp.stack(taps).reshape(kernel.shape)


shifted_sum_conv.defvjp(_shifted_sum_fwd, _shifted_sum_bwd)


def native_conv(x: jax.Array, kernel: jax.Array, groups: int, pad: tuple[int, int]) -> jax.Array:
    """The GPU / TPU form: XLA's grouped convolution, zero-padded by ``pad`` as :func:`shifted_sum_conv`."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        ((pad[0], pad[0]), (pad[1], pad[1])),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def grouped_conv(x: jax.Array, kernel: jax.Array, groups: int, padding: str = "SAME") -> jax.Array:
    """``lax.conv_general_dilated`` with ``feature_group_count=groups``, stride 1, NHWC / HWIO.

    Lowered as :func:`shifted_sum_conv` on CPU and :func:`native_conv` elsewhere.

    Arguments:
        x: ``(B, H, W, C_in)``.
        kernel: ``(kh, kw, C_in / groups, C_out)`` with odd ``kh`` and ``kw``.
        groups: number of groups; ``groups == C_in == C_out`` is a depthwise convolution.
        padding: ``"SAME"`` (zero padding, output ``H x W``) or ``"VALID"``.

    Returns:
        ``(B, H', W', C_out)``.
    """
    kh, kw, per_group, c_out = kernel.shape
    if x.shape[-1] != per_group * groups or c_out % groups or not (kh % 2 and kw % 2):
        raise ValueError(
            f"kernel {kernel.shape} does not fit {x.shape[-1]} input channels in {groups} groups"
        )
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    pad = (kh // 2, kw // 2) if padding == "SAME" else (0, 0)
    return jax.lax.platform_dependent(
        x,
        kernel,
        cpu=lambda x, k: shifted_sum_conv(x, k, groups, pad),
        default=lambda x, k: native_conv(x, k, groups, pad),
    )


class GroupedConv(nnx.Module):
    """Drop-in for ``nnx.Conv(c_in, c_out, kernel_size, feature_group_count=groups, ...)``.

    Arguments:
        in_features, out_features: channels.
        kernel_size: ``(kh, kw)``, both odd.
        groups: feature groups (``in_features`` for depthwise).
        padding: ``"SAME"`` or ``"VALID"``.
        use_bias: add a per-channel bias.
        bias_init: bias initialiser (zeros, as ``nnx.Conv``).
        rngs: parameter initialisation.

    Call: ``(B, H, W, in_features) -> (B, H', W', out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: tuple[int, int],
        *,
        groups: int,
        padding: str = "SAME",
        use_bias: bool = True,
        bias_init=jax.nn.initializers.zeros,
        rngs: nnx.Rngs,
    ):
        shape = (*kernel_size, in_features // groups, out_features)
        self.kernel = nnx.Param(_DEFAULT_KERNEL_INIT(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32)) if use_bias else None
        self.groups = groups
        self.padding = padding

    def __call__(self, x: jax.Array) -> jax.Array:
        y = grouped_conv(x, self.kernel[...].astype(x.dtype), self.groups, self.padding)
        return add_bias(y, self.bias)
