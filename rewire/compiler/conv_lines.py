r"""Always-on channels in feature maps: how :mod:`rewire.compiler.bias_lines` carries a bias
on a conv layer, or on a layer after one, through a netx file.

A dense layer reads an always-on line or relay neuron through one weight. A conv layer reads
its input through a kernel, so its always-on sources are **channels** whose every pixel is on
at every step: the input gets always-on channels (payload 1 at every pixel, fed by the
runner), and a conv layer before a biased layer gets **relay channels** appended after its
real output channels, every pixel of which fires at every step. A conv neuron at output
position ``(y, x)`` reads input pixel ``(y s - p + i, x s - p + j)`` through kernel tap
``(i, j)`` (torch ``conv2d``, dilation 1); a tap reads zero padding at some output positions
unless it is in bounds for all of them (:func:`steady_taps`), so only such taps carry a bias
or drive a relay: then every neuron of a channel gets the same always-on input, as the
channel's bias adds the same ``b_int`` to every pixel.

* the bias of output channel ``c`` is the weight ``b_int[c]`` of one steady tap of the first
  always-on channel;
* a relay channel reads ``m`` steady taps of the always-on channels before it, each through
  ``w_max``, so ``a = w_max m > vThMant`` (the rule of
  :func:`rewire.compiler.bias_lines.relay_counts`);
* a dense layer after a conv layer reads the relay channels' pixels, each an always-on
  source of its own (Lava flattens a map in ``(C, H, W)`` order, so they are the last
  columns).

A grouped conv (a sum pool is one, ``groups = C``) that takes always-on channels is written
as the ``groups = 1`` conv with the same block-diagonal kernel, which computes the same sums.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.ir.compiled_layers import CompiledConv

__all__ = ["axis_taps", "steady_taps", "lined_conv"]


def axis_taps(k: int, size_in: int, size_out: int, stride: int, pad: int) -> list[int]:
    """Kernel offsets ``i`` along one axis whose input index ``o s - p + i`` is inside
    ``[0, size_in)`` for every output index ``o < size_out`` (torch ``conv2d``, dilation 1).

    Example:
        >>> axis_taps(3, 8, 8, 1, 1)   # 'same' 3x3: only the centre
        [1]
        >>> axis_taps(3, 8, 4, 2, 1)   # stride 2: the last row never reaches the padding
        [1, 2]
        >>> axis_taps(2, 4, 2, 2, 0)   # a 2x2 / stride-2 pool: both
        [0, 1]
        >>> axis_taps(1, 4, 6, 1, 1)   # a 1x1 kernel with padding: none
        []
    """
    return [i for i in range(k) if i >= pad and (size_out - 1) * stride - pad + i < size_in]


def steady_taps(layer: CompiledConv) -> list[tuple[int, int]]:
    """The kernel taps ``(i, j)`` of ``layer`` that read an input pixel (never zero padding)
    at every output position, row-major; empty when there is none (e.g. a 1x1 kernel with
    padding)."""
    kh, kw = layer.weight_int.shape[2:]
    (_, h, w), (_, ho, wo) = layer.in_shape, layer.out_shape
    rows = axis_taps(kh, h, ho, layer.stride[0], layer.padding[0])
    cols = axis_taps(kw, w, wo, layer.stride[1], layer.padding[1])
    return [(i, j) for i in rows for j in cols]


def _ungrouped(kernel: np.ndarray, groups: int, c_in: int) -> np.ndarray:
    """A grouped kernel ``(C_out, C_in / g, kH, kW)`` as the block-diagonal ``groups = 1``
    kernel ``(C_out, C_in, kH, kW)``."""
    if groups == 1:
        return kernel
    c_out, ci = kernel.shape[:2]
    co = c_out // groups
    full = np.zeros((c_out, c_in) + kernel.shape[2:], kernel.dtype)
    for g in range(groups):
        full[g * co:(g + 1) * co, g * ci:(g + 1) * ci] = kernel[g * co:(g + 1) * co]
    return full


def lined_conv(layer: CompiledConv, drivers: int, relays: int, taps: int, wmax: int
               ) -> CompiledConv:
    """``layer`` with ``drivers`` always-on input channels after its real ones and ``relays``
    relay channels after its real output channels, the bias moved onto the first driver.

    Args:
        layer: a compiled conv layer (its ``bias_int``, if any, is moved into the kernel).
        drivers: always-on channels in its input (``>= 1`` when it has a bias or relays).
        relays: relay channels to append to its output.
        taps: steady taps each relay reads, through ``wmax`` each (``<= drivers`` times the
            layer's :func:`steady_taps`).
        wmax: the relay weight (the largest weight on the grid).

    Returns:
        The layer without ``bias``/``bias_int``, ``groups = 1`` when it gets channels, its
        ``in_shape``/``out_shape`` and kernels (``weight`` zero on the new entries) grown.
    """
    if not drivers and not relays:
        return layer
    (c_in, h, w), (c_out, ho, wo) = layer.in_shape, layer.out_shape
    slots = [(c_in + c, i, j) for c in range(drivers) for (i, j) in steady_taps(layer)]
    grown = []
    for kernel in (layer.weight, layer.weight_int):
        full = np.zeros((c_out + relays, c_in + drivers) + kernel.shape[2:], kernel.dtype)
        full[:c_out, :c_in] = _ungrouped(kernel, layer.groups, c_in)
        grown.append(full)
    weight, weight_int = grown
    if layer.bias_int is not None:
        ch, i, j = slots[0]
        weight_int[:c_out, ch, i, j] = layer.bias_int
    for ch, i, j in slots[:taps] if relays else ():
        weight_int[c_out:, ch, i, j] = wmax
    return dataclasses.replace(layer, weight=weight, weight_int=weight_int, bias=None,
                               bias_int=None, groups=1, in_shape=(c_in + drivers, h, w),
                               out_shape=(c_out + relays, ho, wo))
