"""Stride-1 ``"SAME"`` convolutions whose reverse pass XLA:CPU runs as fast inside compiled loops
as outside them.

Outside loops, XLA:CPU rewrites the two convolutions of a convolution's reverse pass (the input's
gradient and the kernel's) into its canonical dimension order (``b01f_01io->b01f``) with
transposes. Inside a loop body (``lax.scan``, ``fori_loop``, ``lax.map``: the solvers'
``scan_inner`` and ``solve_loop="while"``, gradient accumulation over micro-batches) it leaves them
in the order JAX's transpose rules write them, and there they ran 25-50x slower on a
8 x 64 x 64 x 32 map (``python -m benchmarks.loop_conv``). Here the reverse rule writes both in the
canonical order itself:

- the input's gradient is the cotangent convolved with the kernel flipped in space and with its
  channel axes swapped;
- the kernel's gradient is the input, its channels taken as the batch and its batch as the
  channels, convolved with the cotangent as a window the size of the image.

These are the programs XLA builds outside loops, so the values are those of ``nnx.Conv`` to
rounding (the tests compare them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bilevel.schedule import after
from fuse4seg_jax.models.channel_sum import add_bias

_LAYOUT = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_LAYOUT)


@jax.custom_vjp
def same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``(B, H, W, C_in), (k_h, k_w, C_in, C_out) -> (B, H, W, C_out)``: stride 1, ``"SAME"``
    padding (``(k - 1) // 2`` before, the rest after, as XLA pads).

    Reverse mode only, like every custom VJP; forward-over-reverse products work, since the
    rules below are plain differentiable code.
    """
    return _conv(x, kernel, "SAME")


def _same_conv_fwd(x, kernel):
    # the plain convolution, not `same_conv`: a JVP of this rule must not meet the custom VJP again
    return _conv(x, kernel, "SAME"), (x, kernel)


def _same_conv_bwd(residuals, cotangent):
    # the transposed copies wait for the cotangent, or XLA may make them in the forward pass
    x, kernel = after(residuals, cotangent)
    before = [(k - 1) // 2 for k in kernel.shape[:2]]
    pads = [(lo, k - 1 - lo) for lo, k in zip(before, kernel.shape[:2], strict=True)]
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    x_cotangent = _conv(cotangent, flipped, [(hi, lo) for lo, hi in pads])
    kernel_cotangent = _conv(x.transpose(3, 1, 2, 0), cotangent.transpose(1, 2, 0, 3), pads)
    return x_cotangent, kernel_cotangent.transpose(1, 2, 0, 3)


same_conv.defvjp(_same_conv_fwd, _same_conv_bwd)


class SameConv(nnx.Conv):
    """``nnx.Conv(in_features, out_features, kernel_size, ...)`` (stride 1, ``"SAME"``, no
    dilation or groups) computed by :func:`same_conv`: the same parameters and values.

    Call: ``(B, H, W, in_features) -> (B, H, W, out_features)``.

    Raises:
        ValueError: a stride, padding, dilation or group count other than nnx's defaults.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: tuple[int, int], **kwargs):
        super().__init__(in_features, out_features, kernel_size, **kwargs)
        plain = {
            "strides": 1,
            "padding": "SAME",
            "input_dilation": 1,
            "kernel_dilation": 1,
            "feature_group_count": 1,
        }
        changed = {k: getattr(self, k) for k, v in plain.items() if getattr(self, k) not in (v, (v, v))}
        if changed:
            raise ValueError(f"SameConv is stride 1, 'SAME', undilated and ungrouped; got {changed}")

    def __call__(self, x: jax.Array) -> jax.Array:
        y = same_conv(x, self.kernel[...].astype(x.dtype))
        return add_bias(y, self.bias)
