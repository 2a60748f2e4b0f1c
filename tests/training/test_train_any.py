"""``train()`` on any compilable model (issue 15, item 1): Norse ``SequentialState`` and
``LIFRecurrentCell`` models written the way Norse's documentation writes them, trained under a
Loihi 2 budget on dense digits and on ``(B, T, N)`` spike trains made from them, end inside
every limit and compile; the data/forward/loss paths and their refusals; ``remove_gradr``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from norse.torch import LIFCell, LIFRecurrentCell, SequentialState
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

import rewire
from rewire.compiler import equivalence
from rewire.training.budget import connected_synapses, max_fan_in
from rewire.training.data import load_digits_split
from rewire.training.feed import Layout, detect_layout
from rewire.training.gradr import hidden_params
from rewire.training.model import SpikingMLP
from rewire.training.train import TrainConfig, train

from norse_models import Recurrent

T = 16


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def rate_spikes(x: torch.Tensor, steps: int = T, seed: int = 0) -> torch.Tensor:
    """Bernoulli spike trains ``(N, T, F)`` of probability ``x`` (per-sample ``(T, F)``)."""
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.unsqueeze(1).expand(-1, steps, -1), generator=g)


@pytest.fixture(scope="module")
def spike_sets(split):
    return (TensorDataset(rate_spikes(split.x_train), split.y_train),
            TensorDataset(rate_spikes(split.x_test, seed=1), split.y_test))


def sequential():
    return SequentialState(nn.Linear(64, 128, bias=False), LIFCell(),
                           nn.Linear(128, 10, bias=False), LIFCell())


def chip_fan_in(net) -> int:
    """Largest fan-in of any chip neuron: non-zero integer weights of its row of
    ``[W | W_rec]`` (a recurrent neuron's recurrent synapses count too)."""
    worst = 0
    for layer in net.layers:
        w = layer.weight_int.reshape(layer.weight_int.shape[0], -1) != 0
        if layer.recurrent:
            w = np.concatenate([w, layer.weight_rec_int != 0], axis=1)
        worst = max(worst, int(w.sum(1).max()))
    return worst


def assert_inside(model, net, budget):
    assert connected_synapses(model) <= budget.max_synapses
    assert net.synapses <= budget.max_synapses
    if budget.max_fan_in:
        assert max_fan_in(model) <= budget.max_fan_in
        assert chip_fan_in(net) <= budget.max_fan_in


@pytest.mark.slow
def test_sequential_state_trains_inside_a_loihi2_budget_and_compiles(split):
    """Done-when (issue 15): a Norse SequentialState on dense digits (constant current, 16
    steps) under Loihi 2 at 10 % connectivity and a fan-in of 24."""
    torch.manual_seed(0)
    model = sequential()
    rewire.apply_gradr(model)           # model_budget counts the GradR weights
    budget = rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=0.1,
                                 max_fan_in=24)
    res = rewire.train(model, TensorDataset(split.x_train, split.y_train), budget,
                       TrainConfig(epochs=8, lr=5e-3, progress=False),
                       test_data=TensorDataset(split.x_test, split.y_test))
    assert res.run_options == {"steps": 16, "encoding": "current", "input_gain": 4.0}
    net = rewire.compile(model, "loihi2", input_max_value=16,
                         calibration=split.x_train.numpy(), **res.run_options)
    print(f"\nSequentialState: accuracy {res.gradr_accuracy:.2%} -> {res.accuracy:.2%}, "
          f"{res.synapses} synapses ({res.synapses / budget.total_synapses:.2%}, budget "
          f"{budget.max_synapses}), projection removed {res.projected_away}, fan-in "
          f"{res.max_fan_in} (limit 24); compiled: {net.synapses} synapses, chip fan-in "
          f"{chip_fan_in(net)}, {[layer.neuron.kind for layer in net.layers]}")
    assert res.accuracy > 0.75
    assert_inside(model, net, budget)
    rep = equivalence.compare(net, split.x_test.numpy(), labels=split.y_test.numpy())
    assert rep.prediction_agreement >= 0.95, rep.format()


@pytest.mark.slow
def test_recurrent_cell_trains_on_spike_trains_inside_a_loihi2_budget(spike_sets, split):
    """Done-when (issue 15): a LIFRecurrentCell model on (B, T, N) spike trains under
    Loihi 2 at 10 % connectivity and a fan-in of 24 (a recurrent neuron's W and W_rec rows
    together); the compiled net (encoding 'rate') is fed the same spikes."""
    train_set, test_set = spike_sets
    torch.manual_seed(0)
    model = Recurrent()
    probe = copy.deepcopy(model)
    rewire.apply_gradr(probe)
    budget = rewire.model_budget(probe, rewire.load_profile("loihi2"), connectivity=0.1,
                                 max_fan_in=24)
    assert budget.total_synapses == 64 * 64 + 64 * 64 + 64 * 10  # W, W_rec, fc
    res = train(model, DataLoader(train_set, batch_size=64, shuffle=True,
                                  generator=torch.Generator().manual_seed(0)),
                budget, TrainConfig(epochs=8, lr=2e-2, progress=False), test_data=test_set)
    assert res.run_options == {"steps": T, "encoding": "rate", "input_gain": 1.0}
    net = rewire.compile(model, "loihi2", **res.run_options)
    assert [layer.recurrent for layer in net.layers] == [True, False]
    spikes = test_set.tensors[0].transpose(0, 1).numpy()           # (T, N, 64)
    rep = equivalence.compare(net, spikes, labels=split.y_test.numpy())
    print(f"\nLIFRecurrentCell on spike trains: accuracy {res.gradr_accuracy:.2%} -> "
          f"{res.accuracy:.2%}, {res.synapses} synapses "
          f"({res.synapses / budget.total_synapses:.2%}, budget {budget.max_synapses}), "
          f"projection removed {res.projected_away}, fan-in {res.gradr_max_fan_in} -> "
          f"{res.max_fan_in} (limit 24); compiled: {net.synapses} synapses, "
          f"chip fan-in {chip_fan_in(net)}; integer {rep.integer_accuracy:.2%}, same class "
          f"{rep.prediction_agreement:.2%}")
    assert res.accuracy > 0.8
    assert_inside(model, net, budget)
    assert abs(rep.float_accuracy - res.accuracy) < 0.02   # the same spikes, the same model
    assert rep.prediction_agreement >= 0.9, rep.format()


# --------------------------------------------------------------------------- data paths


def test_dataset_dataloader_and_split_give_the_same_run(split):
    """A Split, and a DataLoader yielding the same batches, train the same user model to the
    same weights (the data path does not change the numbers)."""
    small = load_digits_split()
    results = []
    for kind in ("split", "loader"):
        torch.manual_seed(3)
        model = SequentialState(nn.Linear(64, 16, bias=False), LIFCell(),
                                nn.Linear(16, 10, bias=False), LIFCell())
        rewire.apply_gradr(model)
        budget = rewire.model_budget(model, connectivity=0.3)
        config = TrainConfig(epochs=1, batch_size=128, progress=False, lr=1e-2)
        if kind == "split":
            res = train(model, small, budget, config, steps=4)
        else:
            g = torch.Generator().manual_seed(0)
            order = torch.randperm(len(small.x_train), generator=g)
            batches = [(small.x_train[order[i:i + 128]], small.y_train[order[i:i + 128]])
                       for i in range(0, len(order), 128)]
            res = train(model, batches_loader(batches), budget, config, steps=4,
                        test_data=TensorDataset(small.x_test, small.y_test))
        results.append((res, [t.detach().clone() for t in hidden_params(model)]))
    (a, ta), (b, tb) = results
    assert all(torch.equal(x, y) for x, y in zip(ta, tb))
    assert a.accuracy == b.accuracy and a.history == b.history


def batches_loader(batches):
    """A DataLoader yielding exactly ``batches`` (one batch per item, no re-collation)."""
    return DataLoader(batches, batch_size=None, shuffle=False)


def test_user_forward_and_loss_are_used(split):
    """The user's forward and loss replace the defaults; a tuple output's first element is
    the spikes."""
    calls = {"forward": 0, "loss": 0}

    def forward(model, inputs):
        calls["forward"] += 1
        state, out = None, []
        for x_t in inputs:
            z, state = model(x_t, state)
            out.append(z)
        return torch.stack(out), "extra"

    def loss(out, y):
        calls["loss"] += 1
        return nn.functional.cross_entropy(out.sum(0), y)

    torch.manual_seed(0)
    model = SequentialState(nn.Linear(64, 16, bias=False), LIFCell(),
                            nn.Linear(16, 10, bias=False), LIFCell())
    rewire.apply_gradr(model)
    budget = rewire.model_budget(model, connectivity=0.5)
    data = TensorDataset(split.x_train[:256], split.y_train[:256])
    res = train(model, data, budget, TrainConfig(epochs=1, batch_size=128, progress=False),
                test_data=TensorDataset(split.x_test[:100], split.y_test[:100]),
                forward=forward, loss=loss, steps=4)
    assert calls["loss"] == 2
    # two training batches, then one test batch per accuracy (after too if it projected)
    assert calls["forward"] == 2 + (1 if res.projected_away == 0 else 2)
    assert 0.0 <= res.accuracy <= 1.0


def test_rewire_model_on_spike_trains_needs_rate_encoding(spike_sets):
    train_set, test_set = spike_sets
    torch.manual_seed(0)
    config = TrainConfig(epochs=1, progress=False)
    model = SpikingMLP((64, 16, 10), steps=T, encoding="current")
    probe = copy.deepcopy(model)
    rewire.apply_gradr(probe)
    budget = rewire.model_budget(probe, connectivity=0.5)
    with pytest.raises(ValueError, match="encoding='rate'"):
        train(model, train_set, budget, config, test_data=test_set)
    with pytest.raises(ValueError, match="steps=16"):
        train(SpikingMLP((64, 16, 10), steps=8, encoding="rate"), train_set, budget, config,
              test_data=test_set)
    small = TensorDataset(*(t[:128] for t in train_set.tensors))
    res = train(SpikingMLP((64, 16, 10), steps=T, encoding="rate"), small, budget, config,
                test_data=test_set)
    assert res.run_options["encoding"] == "rate"


def test_detect_layout_reads_time_and_batch_axes():
    y = torch.zeros(5, dtype=torch.long)
    assert detect_layout(torch.zeros(5, 64), y, (64,), None, 16, "data") == \
        Layout("dense", None, 16)
    assert detect_layout(torch.zeros(5, 7, 64), y, (64,), None, 16, "data") == \
        Layout("spikes", 1, 7)
    assert detect_layout(torch.zeros(7, 5, 64), y, (64,), None, 16, "data") == \
        Layout("spikes", 0, 7)
    assert detect_layout(torch.zeros(5, 5, 64), y, (64,), 1, 16, "data") == \
        Layout("spikes", 1, 5)
    assert detect_layout(torch.zeros(5, 2, 8, 8), y, (2, None, None), None, 16, "data") == \
        Layout("dense", None, 16)
    assert detect_layout(torch.zeros(5, 7, 2, 8, 8), y, (2, None, None), None, 16,
                         "data").kind == "spikes"


@pytest.mark.parametrize("x, y, axis, match", [
    (torch.zeros(5, 5, 64), torch.zeros(5, dtype=torch.long), None, "time_axis=1"),
    (torch.zeros(6, 7, 64), torch.zeros(5, dtype=torch.long), None, "neither its first"),
    (torch.zeros(5, 7, 64), torch.zeros(5, dtype=torch.long), 0, "7 samples but 5 labels"),
    (torch.zeros(5, 63), torch.zeros(5, dtype=torch.long), None, r"\(B, 64\)"),
    (torch.zeros(4, 64), torch.zeros(5, dtype=torch.long), None, "4 samples but 5 labels"),
    (torch.zeros(5, 64), torch.zeros(5), None, "integer class indices"),
    (torch.zeros(5, 64), torch.zeros(5, 1, dtype=torch.long), None, r"\(B,\) class"),
    (torch.zeros(5, 7, 64), torch.zeros(5, dtype=torch.long), 2, "time_axis must be"),
])
def test_detect_layout_refuses_what_it_cannot_read(x, y, axis, match):
    with pytest.raises(ValueError, match=match):
        detect_layout(x, y, (64,), axis, 16, "data")


def _tiny():
    model = SequentialState(nn.Linear(64, 8, bias=False), LIFCell(),
                            nn.Linear(8, 10, bias=False), LIFCell())
    rewire.apply_gradr(model)
    return model, rewire.model_budget(model, connectivity=0.5)


def test_train_refuses_bad_data_before_training(split):
    """Each refusal names the argument and the fix, and comes before any optimizer step (the
    weights are unchanged)."""
    model, budget = _tiny()
    before = [t.detach().clone() for t in hidden_params(model)]
    config = TrainConfig(epochs=1, progress=False)
    data = TensorDataset(split.x_train[:64], split.y_train[:64])
    spikes = TensorDataset(rate_spikes(split.x_train[:64]) * 2, split.y_train[:64])
    cases = [
        (dict(data=data), "test_data: give the test"),
        (dict(data=split, test_data=data), "a Split carries its own test set"),
        (dict(data=[1, 2, 3], test_data=data), "give a rewire Split, a torch Dataset"),
        (dict(data=spikes, test_data=spikes), "0/1 values"),
        (dict(data=TensorDataset(rate_spikes(split.x_train[:64])), test_data=data),
         "must be a pair"),
        (dict(data=TensorDataset(rate_spikes(split.x_train[:64]), split.y_train[:64]),
              test_data=data), "give both the same kind"),
        (dict(data=TensorDataset(rate_spikes(split.x_train[:64]), split.y_train[:64]),
              test_data=TensorDataset(rate_spikes(split.x_test[:64]), split.y_test[:64]),
              steps=8), "drop steps"),
        (dict(data=TensorDataset(rate_spikes(split.x_train[:64]), split.y_train[:64]),
              test_data=TensorDataset(rate_spikes(split.x_test[:64]), split.y_test[:64]),
              encoding="current"), "drop encoding"),
        (dict(data=data, test_data=data, encoding="poisson"), "encoding must be one of"),
        (dict(data=data, test_data=data, steps=0), "steps must be"),
        (dict(data=data, test_data=data, input_gain=-1.0), "input_gain must be"),
        (dict(data=TensorDataset(split.x_train[:64], split.y_train[:64] + 10),
              test_data=data), "output neurons"),
        (dict(data=data, test_data=data, forward=lambda m, x: x.sum(0)),
         r"output spikes \(T, B, classes\)"),
    ]
    for kwargs, match in cases:
        kwargs = dict(kwargs)
        d = kwargs.pop("data")
        with pytest.raises(ValueError, match=match):
            train(model, d, budget, config, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, hidden_params(model)))


def test_baselines_refuse_a_parametrized_model(split):
    model, budget = _tiny()
    with pytest.raises(ValueError, match="without GradR"):
        train(model, split, budget, TrainConfig(epochs=1, method="deep-r", progress=False),
              steps=4)


def test_sequential_state_with_a_recurrent_cell_trains_one_epoch(spike_sets):
    """Norse's SequentialState(LIFRecurrentCell, Linear, LIFCell) on (T, B, N) batches (a
    time-first collate), stepped once per time step."""
    train_set, test_set = spike_sets

    def time_first(samples):
        x = torch.stack([s[0] for s in samples], 1)
        return x, torch.stack([s[1] for s in samples])

    torch.manual_seed(0)
    model = SequentialState(LIFRecurrentCell(64, 32), nn.Linear(32, 10, bias=False), LIFCell())
    rewire.apply_gradr(model)
    budget = rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=0.2)
    loader = DataLoader(train_set, batch_size=128, collate_fn=time_first)
    res = train(model, loader, budget, TrainConfig(epochs=1, lr=1e-2, progress=False),
                test_data=DataLoader(test_set, batch_size=100, collate_fn=time_first))
    assert res.synapses <= budget.max_synapses
    net = rewire.compile(model, "loihi2", **res.run_options)
    assert net.steps == T and net.encoding == "rate"


# --------------------------------------------------------------------------- remove_gradr


def test_remove_gradr_gives_a_plain_model_that_saves_and_compiles(tmp_path, split):
    """A recurrent Norse model: plain parameters ``s * relu(theta)``, zero exactly where
    ``theta <= 0``, the same outputs, a ``state_dict`` a fresh Norse model loads, and the same
    compiled network. (Norse 1.1 models do not pickle whole, GradR or not: its
    ``LIFParameters`` class cannot be looked up by name; their route is the ``state_dict``.)"""
    torch.manual_seed(0)

    def make():
        return SequentialState(LIFRecurrentCell(64, 32), nn.Linear(32, 10, bias=False),
                               LIFCell())

    model = make()
    thetas = rewire.apply_gradr(model)
    with torch.no_grad():
        for theta in thetas:     # a pruned pattern, with negative-sign zeros among it
            theta.sub_(theta.median()).mul_(8.0)
    masks = [(t > 0).clone() for t in thetas]
    x = (torch.rand(T, 8, 64) < 0.3).float()
    with torch.no_grad():
        ref = rewire.training.feed.run_stepwise(model, x)
    assert ref.sum() > 0
    compiled_before = rewire.compile(model, "loihi2", steps=T, encoding="rate")
    assert rewire.remove_gradr(model) is model
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    weights = [model[0].input_weights, model[0].recurrent_weights, model[1].weight]
    for w, mask in zip(weights, masks):
        assert isinstance(w, nn.Parameter)
        assert torch.equal(w != 0, mask)                  # zero exactly where theta <= 0
        assert not torch.any(torch.signbit(w[~mask]))    # +0.0, never -0.0
    assert set(model.state_dict()) == {"0.input_weights", "0.recurrent_weights", "1.weight"}
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = make()
    loaded.load_state_dict(torch.load(tmp_path / "model.pt"))
    with torch.no_grad():
        assert torch.equal(rewire.training.feed.run_stepwise(model, x), ref)
        assert torch.equal(rewire.training.feed.run_stepwise(loaded, x), ref)
    compiled = rewire.compile(loaded, "loihi2", steps=T, encoding="rate")
    assert compiled.synapses == compiled_before.synapses
    for a, b in zip(compiled.layers, compiled_before.layers):
        assert np.array_equal(a.weight_int, b.weight_int)
    with pytest.raises(ValueError, match="no GradR weight"):
        rewire.remove_gradr(model)


def test_remove_gradr_lets_torch_save_pickle_the_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 10, bias=False))
    rewire.apply_gradr(model)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
    with pytest.raises(RuntimeError, match="state_dict"):
        torch.save(model, tmp_path / "parametrized.pt")   # what remove_gradr is for
    rewire.remove_gradr(model)
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)


def test_remove_gradr_after_train(split, tmp_path):
    """The plain model has as many non-zero weights as the trained one had connected
    synapses, and the same accuracy (``accuracy`` reads the data as ``train`` does)."""
    from rewire.training.train import accuracy

    model, budget = _tiny()
    res = train(model, split, budget, TrainConfig(epochs=1, lr=1e-2, progress=False),
                steps=4)
    conn = connected_synapses(model)
    assert accuracy(model, split, steps=4) == res.accuracy
    rewire.remove_gradr(model)
    assert sum(int((p != 0).sum()) for p in model.parameters()) == conn
    assert accuracy(model, split, steps=4) == res.accuracy
    assert accuracy(model, TensorDataset(split.x_test, split.y_test), steps=4) == res.accuracy
    torch.save(model.state_dict(), tmp_path / "w.pt")
    fresh = SequentialState(nn.Linear(64, 8, bias=False), LIFCell(),
                            nn.Linear(8, 10, bias=False), LIFCell())
    fresh.load_state_dict(torch.load(tmp_path / "w.pt"))   # a plain Norse model takes it
    assert torch.equal(fresh[0].weight, model[0].weight)


# --------------------------------------------------------------------------- tonic events


def digit_events(x: torch.Tensor, seed: int, duration: int = 16_000):
    """tonic-style event recordings of digit images: each pixel fires Poisson-like events
    (x, y, t in µs, p) at a rate proportional to its intensity."""
    rng = np.random.default_rng(seed)
    dtype = [("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)]
    out = []
    for img in x.reshape(-1, 8, 8).numpy():
        counts = rng.poisson(img * 16)
        ys, xs = np.nonzero(counts)
        reps = counts[ys, xs]
        ev = np.zeros(int(reps.sum()), dtype=dtype)
        ev["x"], ev["y"] = np.repeat(xs, reps), np.repeat(ys, reps)
        ev["t"] = rng.integers(0, duration, len(ev))
        out.append(np.sort(ev, order="t"))
    return out


@pytest.mark.slow
def test_tonic_to_frame_pipeline_trains_through_the_dataset_path(split):
    """tonic's ToFrame bins events into (T, P, H, W) counts; clipped to 0/1 and flattened per
    step, the EventDataset feeds (B, T, 64) spike trains to train()."""
    tonic = pytest.importorskip("tonic")
    from rewire.training.feed import EventDataset

    to_frame = tonic.transforms.ToFrame(sensor_size=(8, 8, 1), n_time_bins=T)

    def transform(events):
        frames = to_frame(events)                                   # (T, 1, 8, 8) counts
        return np.minimum(frames.reshape(len(frames), -1), 1)       # (T, 64) 0/1

    train_set = EventDataset(digit_events(split.x_train, 0), split.y_train,
                             transform)
    test_set = EventDataset(digit_events(split.x_test, 1), split.y_test, transform)
    assert train_set[0][0].shape == (T, 64)
    torch.manual_seed(0)
    model = Recurrent()
    rewire.apply_gradr(model)
    budget = rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=0.1)
    res = train(model, train_set, budget, TrainConfig(epochs=8, lr=2e-2, progress=False),
                test_data=test_set)
    print(f"\ntonic ToFrame events: accuracy {res.accuracy:.2%}, {res.synapses} synapses")
    assert res.run_options == {"steps": T, "encoding": "rate", "input_gain": 1.0}
    assert res.synapses <= budget.max_synapses
    assert res.accuracy > 0.6, res
    net = rewire.compile(model, "loihi2", **res.run_options)
    assert net.synapses <= budget.max_synapses


def test_event_dataset_refuses_mismatched_labels():
    from rewire.training.feed import EventDataset

    with pytest.raises(ValueError, match="one label per recording"):
        EventDataset([np.zeros(1)], [0, 1], lambda e: e)


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 9), t=st.integers(1, 9), f=st.integers(1, 5),
       time_first=st.booleans())
def test_detect_layout_property(b, t, f, time_first):
    """Any (B, T, F) or (T, B, F) batch is read with the right axes when B != T, and refused
    with the time_axis fix when B == T; the explicit time_axis always reads it."""
    shape = (t, b, f) if time_first else (b, t, f)
    x, y = torch.zeros(shape), torch.zeros(b, dtype=torch.long)
    axis = 0 if time_first else 1
    if b == t:
        with pytest.raises(ValueError, match="time_axis=1"):
            detect_layout(x, y, (f,), None, 16, "data")
    else:
        assert detect_layout(x, y, (f,), None, 16, "data") == Layout("spikes", axis, t)
    assert detect_layout(x, y, (f,), axis, 16, "data") == Layout("spikes", axis, t)
    assert detect_layout(torch.zeros(b, f), y, (f,), None, t, "data") == \
        Layout("dense", None, t)
