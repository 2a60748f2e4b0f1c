"""One input layout per model (issue 23 item 6): a conv net's and an image MLP's forward take
``(B, 1, 8, 8)``, and so do the equivalence report, the integer model's encoder and
simulator; the flat ``(B, 64)`` too, with the same result. Anything else is refused naming
both layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from norse.torch import LIFCell, SequentialState

import rewire
from rewire.compiler import equivalence, simulate
from rewire.ir.compiled import CompiledNetwork

IMAGE = (1, 8, 8)


def image_models():
    """A small conv net and an MLP that flattens the image itself, both taking (B, 1, 8, 8)."""
    torch.manual_seed(0)
    conv = SequentialState(torch.nn.Conv2d(1, 4, 3, bias=False), LIFCell(), torch.nn.Flatten(),
                           torch.nn.Linear(4 * 6 * 6, 10, bias=False), LIFCell())
    mlp = SequentialState(torch.nn.Flatten(), torch.nn.Linear(64, 32, bias=False), LIFCell(),
                          torch.nn.Linear(32, 10, bias=False), LIFCell())
    with torch.no_grad():
        for m in (conv, mlp):
            for p in m.parameters():
                p.mul_(4)
    return {"conv": conv, "mlp": mlp}


def compiled(kind: str, encoding: str = "current") -> CompiledNetwork:
    return rewire.compile(image_models()[kind], "loihi2", steps=8, encoding=encoding,
                          input_gain=4.0, input_max_value=16, input_shape=IMAGE)


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *IMAGE)).astype(np.float32)


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_the_compiled_network_knows_the_models_layout(kind):
    net = compiled(kind)
    assert net.input_shape == IMAGE and net.sizes[0] == 64
    again = CompiledNetwork.from_dict(net.to_dict())
    assert again.input_shape == IMAGE
    # the float forward of the user's model takes that layout
    x = torch.tensor(images())
    state, counts = None, 0
    model = image_models()[kind]
    for _ in range(8):
        z, state = model(4.0 * x, state)
        counts = counts + z
    rep = equivalence.compare(net, images())
    assert rep.layers[-1].float_spikes == int(counts.sum())


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_compare_takes_both_layouts_with_the_same_report(kind):
    net, x = compiled(kind), images()
    labels = np.arange(len(x)) % 10
    image = equivalence.compare(net, x, labels=labels)
    flat = equivalence.compare(net, x.reshape(len(x), 64), labels=labels)
    assert image == flat
    assert image.layers[0].float_spikes > 0 and image.layers[0].integer_spikes > 0


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_encode_input_and_simulate_take_both_layouts(kind):
    net, x = compiled(kind), images()
    payload = simulate.encode_input(net, x)
    assert payload.shape == (8, len(x), 64) and payload.dtype == np.int64
    assert np.array_equal(payload, simulate.encode_input(net, x.reshape(len(x), 64)))
    out = simulate.simulate(net, payload)[-1]
    as_image = simulate.simulate(net, payload.reshape(8, len(x), *IMAGE))[-1]
    assert np.array_equal(out, as_image) and out.sum() > 0


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_rate_encoding_takes_both_layouts(kind):
    net = compiled(kind, "rate")
    spikes = (np.random.default_rng(1).random((8, 5, *IMAGE)) < 0.5).astype(np.float32)
    flat = spikes.reshape(8, 5, 64)
    assert equivalence.compare(net, spikes) == equivalence.compare(net, flat)
    assert np.array_equal(simulate.encode_input(net, spikes), simulate.encode_input(net, flat))


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_other_layouts_are_refused_naming_both(kind):
    net = compiled(kind)
    for bad in (np.zeros((3, 8, 8)), np.zeros((3, 1, 64)), np.zeros((8, 3, 64))):
        with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\) or \(B, 64\)"):
            equivalence.compare(net, bad)
        with pytest.raises(ValueError, match=r"current encoding needs x of shape"):
            simulate.encode_input(net, bad)


def test_a_flat_mlp_takes_only_its_flat_layout():
    """An MLP of no image layout: (B, 64) only; (B, 1, 8, 8) is not guessed."""
    torch.manual_seed(0)
    mlp = SequentialState(torch.nn.Linear(64, 10, bias=False), LIFCell())
    net = rewire.compile(mlp, "loihi2", steps=4, encoding="current", input_max_value=16)
    assert net.input_shape == (64,) and net.input_layout == ()
    assert "input_layout" not in net.to_dict()
    equivalence.compare(net, images().reshape(6, 64))
    with pytest.raises(ValueError, match=r"of shape \(B, 64\), got \(6, 1, 8, 8\)"):
        equivalence.compare(net, images())


def test_a_layout_that_does_not_hold_the_inputs_is_refused():
    import dataclasses

    net = compiled("mlp")
    with pytest.raises(ValueError, match="holds 49 values, not the 64 inputs"):
        dataclasses.replace(net, input_layout=(1, 7, 7))
    bad = net.to_dict() | {"input_layout": [1, "8", 8]}
    with pytest.raises(ValueError, match="input_layout must be a list of integers"):
        CompiledNetwork.from_dict(bad)


def test_compile_reads_the_layout_from_image_calibration_data():
    """Images given as calibration tell a conv net's size (its Conv2d alone does not)."""
    models = image_models()
    with pytest.raises(rewire.errors.LoweringError, match="input shape of a convolutional"):
        rewire.compile(models["conv"], "loihi2", steps=8, encoding="current")
    for kind, model in models.items():
        net = rewire.compile(model, "loihi2", steps=8, encoding="current", input_gain=4.0,
                             input_max_value=16, calibration=images())
        assert net.input_shape == IMAGE and net.sizes == compiled(kind).sizes
