"""One input layout per model: the per-sample shape its float forward takes, or flat.

A model's input is ``(B, *input_shape)`` (``current`` encoding: the value of each sample) or
``(T, B, *input_shape)`` (``rate`` encoding, and any per-step input): ``input_shape`` is the
per-sample shape the source model's forward takes, e.g. ``(1, 8, 8)`` for a conv net or an
MLP that flattens an image itself, ``(64,)`` for a plain MLP. Every entry point that takes
input (:func:`rewire.compiler.equivalence.compare`, :func:`rewire.compiler.simulate.encode_input`
and :func:`~rewire.compiler.simulate.simulate`, the ONNX runners, ``run_netx``) takes it in
that layout, and also flat, ``(..., n_in)`` with ``n_in = prod(input_shape)`` (torch's
``x.flatten()`` order, ``C`` then ``H`` then ``W``), the layout of the integer payloads and of
every file's input. Nothing else is guessed: a per-sample shape that is neither is refused,
since ``(T, B, 8, 8)`` could as well be ``B`` samples of ``(8, 8)`` as ``T * B`` rows.
"""

from __future__ import annotations

import math

__all__ = ["layouts", "flatten_samples", "sample_axes"]


def layouts(n_in: int, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The per-sample shapes accepted for a model of ``n_in`` inputs laid out as
    ``input_shape``: ``input_shape`` itself and the flat ``(n_in,)`` (one if they are the
    same).

    Raises:
        ValueError: ``input_shape`` does not hold ``n_in`` values.
    """
    shape = tuple(int(s) for s in input_shape) or (int(n_in),)
    if math.prod(shape) != int(n_in):
        raise ValueError(f"input_shape {shape} holds {math.prod(shape)} values, not the "
                         f"{n_in} inputs of the first layer")
    return (shape,) if shape == (int(n_in),) else (shape, (int(n_in),))


def flatten_samples(x, n_in: int, input_shape: tuple[int, ...], lead: int,
                    what: str = "the model needs x"):
    """``x`` of shape ``(*L, *input_shape)`` or ``(*L, n_in)`` (``L`` the ``lead`` leading
    axes: 1 for ``(B, ...)``, 2 for ``(T, B, ...)``) as ``(*L, n_in)``: a reshape, no copy
    when ``x`` is contiguous (a numpy array or a torch tensor, returned as the same kind).

    Raises:
        ValueError: ``x`` is in neither layout: "``what`` of shape ``(B, C, H, W)`` or
            ``(B, n_in)``, got ...".
    """
    accepted = layouts(n_in, input_shape)
    shape = tuple(x.shape)
    if len(shape) > lead and shape[lead:] in accepted:
        return x.reshape(*shape[:lead], int(n_in))
    axes = "(B, " if lead == 1 else "(T, B, "
    raise ValueError(f"{what} of shape "
                     + " or ".join(axes + ", ".join(map(str, s)) + ")" for s in accepted)
                     + f", got {shape}")


def sample_axes(x, n_in: int, input_shape: tuple[int, ...], what: str = "x") -> int:
    """How many leading axes ``x`` has before its samples' values: 1 (``(B, ...)``, a value
    per sample) or 2 (``(T, B, ...)``, a value per step), in either accepted layout. The two
    never coincide for the shapes a network has (``(n,)`` or ``(C, H, W)``).

    Raises:
        ValueError: ``x`` fits neither (named, with the layouts).
    """
    accepted = layouts(n_in, input_shape)
    shape = tuple(x.shape)
    for lead in (1, 2):
        if len(shape) > lead and shape[lead:] in accepted:
            return lead
    names = ", ".join(str(s) for s in accepted)
    raise ValueError(f"{what}: shape {shape} is neither (B, *S) nor (T, B, *S) for a "
                     f"per-sample shape S of this model ({names})")
