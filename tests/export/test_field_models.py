"""Issue 22's "done when" cases end to end from user code: each model trained (or built) as its
library writes it, lowered, compiled for ``loihi2`` and written as netx; measured as the issue
asks:

(a) the float IR equals the user's own model spike for spike on 64 digits test samples;
(b) Lava runs the netx file equal to the integer model (aligned) on 10 samples, output spikes
    counted, or netx refuses naming the layer (the refusal is recorded);
(c) the float IR and the integer model give the same class on >= 98 % of the 360 digits
    test samples.

Cases: (1) Norse MLP with default ``nn.Linear`` biases, (2) Norse conv net with
``BatchNorm2d`` (the folded conv biases travel as always-on channels and relay channels,
:mod:`rewire.compiler.conv_lines`; the integer ONNX is checked too),
(3) ``Linear -> LIFRecurrentCell -> Linear -> LIFCell``, (4) a sinabs-style NIR conv net
(``framework="norse"``; ``framework="sinabs"`` is refused by netx), trained on the digits as a
torch model of the same layout, (5) an snnTorch ``RLeaky`` NIR graph with biases
(``framework="norse"``, zero reset). Cases 2, 4 and 5 are fine-tuned on the chip's grid after
their plain training (``AGREEMENT_FLOOR`` says why).

NIR graphs compute on the digit ``x`` itself; they are lowered with ``input_gain=GAIN`` (the
IR presents ``GAIN * x`` and divides the first weights by ``GAIN``, exact in float). Run with
``-s`` to see the table (``test_zz_table``).
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import rewire
from rewire.compiler import simulate as sim
from rewire.compiler.equivalence import compare
from rewire.errors import ExportError
from rewire.export import netx, onnx_int
from rewire.ir import dynamics

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "frontends"))
import field_models as fm  # noqa: E402

from conftest import requires_lava  # noqa: E402

pytestmark = pytest.mark.slow
IMAGE = (1, 8, 8)
# plain epochs (6 plain epochs of bn/rleaky reach only 97.22 % / 96.94 % agreement), then
# epochs on the chip's grid (below)
EPOCHS = {"mlp": 3, "bn": 3, "rec": 6, "rleaky": 3, "sinabs": 2}
QAT_EPOCHS = {"bn": 1, "rleaky": 2, "sinabs": 2}
QAT_LR = 1e-3
ROWS: dict[str, dict] = {}
# issue 22: float and integer give the same class on >= 98 % of the test samples, every case
AGREEMENT_FLOOR = 0.98
# Why cases 2, 4 and 5 missed it after plain training (91.11 %, 84.17 % trained, 93.89 %),
# measured by putting one quantized quantity at a time into the float model: the first
# layer's weight rounding. Its scale S is set by its largest integer column, the bias (case
# 2: the BatchNorm-folded conv bias, 254) or the recurrent weights (case 5: 254), which carry
# one unit each, while an input weight carries up to 16 units of payload: the input weights
# kept 24-26 of 254 (12 grid steps), and their rounding alone gave 92.50 % / 94.17 %. A
# coarser payload trades it for the input's rounding (8, 4, 2: no better). Case 4 (IF, no
# leak) integrates every layer's rounding. So each is fine-tuned on the chip's grid
# (QAT_EPOCHS; rewire's QAT rule, rewire/training/qat.py, in the user's own loop): every
# weight it names on the compiler's grid, with the leaks and thresholds QAT rounds.


def _compile(model, shape, calibration=None, **options):
    """Compile for loihi2 with the digits' current encoding; ``calibration``: that many
    training samples (default all; the grid's refreshes take 256, as S is set by the weight
    bits in every case here)."""
    xtr = fm.digits()[0][:calibration]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rewire.compile(model, "loihi2", input_max_value=16,
                              calibration=xtr.reshape(len(xtr), *shape).numpy(),
                              steps=fm.STEPS, encoding="current", input_gain=fm.GAIN,
                              **options)


# ---------------------------------------------------------------------------------------------
# the cases: (user's run on x, IR network, compiled network, input shape)


def _fine_tune_on_grid(model, shape, epochs: int) -> None:
    """Fine-tune the BatchNorm conv net on the chip's grid (rewire's QAT, in the user's own
    loop): the BatchNorms fixed (their factors set the folded weights' grid), every folded
    weight and bias on the compiler's grid, the leaks and thresholds on the chip's."""
    if not epochs:
        return
    convs = [(k, m) for k, m in enumerate(mm for mm in model if isinstance(mm, (
        torch.nn.Conv2d, torch.nn.Linear)))]
    tensors = [t for k, m in convs for t in ((m, "weight", k, "weight", 1.0),
                                             (m, "bias", k, "bias", 1.0))]
    cells = [m for m in model if hasattr(m, "p") and hasattr(m.p, "v_th")]
    xs = fm.encode(fm.digits()[0][:64], shape)

    def compiled_now():
        with fm.grids_removed(model):
            return _compile(model, shape, 256, example_input=xs, input_shape=shape)

    for epoch in range(epochs + 1):
        compiled = compiled_now()
        fm.set_grids(model, tensors, compiled)
        for cell, layer in zip(cells, compiled.layers):
            unit = compiled.profile.neuron.decay_unit
            cell.p = cell.p._replace(
                tau_mem_inv=torch.tensor(layer.chip.v_decay / (unit * layer.neuron.dt)),
                v_th=torch.tensor(layer.chip.v_th_mant / layer.scale))
        if epoch < epochs:
            fm.fit(model, shape=shape, epochs=1, seed=100 + epoch, lr=QAT_LR,
                   norm_frozen=True)
    fm.bake_grids(model).eval()


@functools.lru_cache(maxsize=None)
def _norse(kind: str):
    shape = IMAGE if kind == "bn" else (64,)
    torch.manual_seed(0)  # the initial weights, whatever ran before
    model = {"mlp": fm.norse_mlp, "bn": fm.norse_bn_conv, "rec": fm.norse_recurrent_chain}[kind]()
    if kind == "bn":
        # BatchNorm's unit scale leaves LIFBoxCell silent (nothing to train): a larger scale
        # at init, and a readout that spikes
        with torch.no_grad():
            for m in model:
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.fill_(2.0)
            model[7].weight.mul_(10.0)
        fm.fit(model, shape=shape, epochs=EPOCHS["bn"], lr=1e-2)
        _fine_tune_on_grid(model, shape, QAT_EPOCHS["bn"])
    else:
        fm.fit(model, shape=shape, epochs=EPOCHS[kind])
    xs = fm.encode(fm.digits()[2][:64], shape)
    net = rewire.lower(model, xs, steps=fm.STEPS, encoding="current", input_gain=fm.GAIN,
                       input_shape=shape)
    compiled = _compile(model, shape, example_input=xs, input_shape=shape)

    def user(x_seq):
        with torch.no_grad():
            return fm.run(model, x_seq)

    return user, net, compiled, shape


@functools.lru_cache(maxsize=None)
def _sinabs_trained():
    """The sinabs-style net's weights trained on the digits, then fine-tuned on the chip's
    grid (:func:`field_models.fit_sinabs`; the IR's first weights are ``w1 / GAIN``, and a
    fused pool repeats each ``w2``/``w3`` entry unchanged)."""
    from test_fused_user_models import _sinabs_graph

    weights = fm.fit_sinabs(fm.sinabs_init(), epochs=EPOCHS["sinabs"])
    for epoch in range(QAT_EPOCHS["sinabs"] + 1):
        compiled = _compile(_sinabs_graph(weights=weights)[0], IMAGE, 256, framework="norse")
        wfmt = compiled.profile.weights
        grids = [(a, fm.grid_k(layer, "weight"), wfmt.step,
                  min(wfmt.max_int, -wfmt.min_int))
                 for a, layer in zip((1 / fm.GAIN, 1.0, 1.0), compiled.layers)]
        weights = fm.fit_sinabs(weights, epochs=int(epoch < QAT_EPOCHS["sinabs"]),
                                lr=QAT_LR, seed=100 + epoch, grids=grids)
    return weights


@functools.lru_cache(maxsize=None)
def _sinabs(framework: str = "norse"):
    from test_fused_user_models import _sinabs_graph, _unfused_run

    graph, weights = _sinabs_graph(weights=_sinabs_trained())
    net = rewire.lower(graph, steps=fm.STEPS, framework=framework, encoding="current",
                       input_gain=fm.GAIN)
    compiled = _compile(graph, IMAGE, framework=framework)
    plain = rewire.lower(graph, steps=fm.STEPS, framework=framework)  # the graph's own weights
    return (lambda x_seq: _unfused_run(plain, weights, x_seq)), net, compiled, IMAGE


def _snntorch_rleaky():
    import snntorch as snn

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), snn.RLeaky(beta=0.9, linear_features=32,
                                                                   **kw),
                               torch.nn.Linear(32, 10), snn.Leaky(beta=0.8, output=True, **kw))


def _fit_snntorch(net, epochs=3, lr=5e-3, seed=0):
    """snnTorch's tutorial loop: spike counts' cross-entropy, Adam; biases on everywhere."""
    from snntorch import utils

    xtr, ytr, _, _ = fm.digits()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    torch.manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            utils.reset(net)
            x = fm.encode(xtr[idx]) / fm.GAIN  # the graph computes on x
            counts = torch.stack([net(x_t)[0] for x_t in x]).sum(0)
            loss = torch.nn.functional.cross_entropy(counts, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


@functools.lru_cache(maxsize=None)
def _rleaky():
    pytest.importorskip("snntorch")
    from test_nir_sources import _snntorch_graph, _snntorch_run

    model = _snntorch_rleaky()
    with torch.no_grad():
        model[0].weight.mul_(3)
        model[2].weight.mul_(3)
    _fit_snntorch(model, epochs=EPOCHS["rleaky"])
    assert model[0].bias is not None and model[1].recurrent.bias is not None

    def compile_graph():
        with fm.grids_removed(model):
            return _compile(_snntorch_graph(model, 64), (64,), 256, dt=1e-4,
                            framework="norse")

    tensors = [(model[0], "weight", 0, "weight", 1.0),
               (model[1].recurrent, "weight", 0, "weight_rec", 1.0),
               (model[2], "weight", 1, "weight", 1.0)]
    if QAT_EPOCHS["rleaky"]:  # the leaks on the chip's 12-bit decay grid, as rewire's QAT does
        for cell in (model[1], model[3]):
            cell.beta = 1 - torch.round(4096 * (1 - cell.beta)) / 4096
    for epoch in range(QAT_EPOCHS["rleaky"]):
        fm.set_grids(model, tensors, compile_graph())
        _fit_snntorch(model, epochs=1, lr=QAT_LR, seed=100 + epoch)
    if QAT_EPOCHS["rleaky"]:
        fm.set_grids(model, tensors, compile_graph())
        fm.bake_grids(model)
    graph = _snntorch_graph(model, 64)  # nir.write fails on it (a scalar dataset): in memory
    net = rewire.lower(graph, dt=1e-4, framework="norse", steps=fm.STEPS, encoding="current",
                       input_gain=fm.GAIN)
    compiled = _compile(graph, (64,), dt=1e-4, framework="norse")
    return (lambda x_seq: _snntorch_run(model, x_seq)), net, compiled, (64,)


CASES = {"1 norse_mlp": lambda: _norse("mlp"), "2 norse_bn_conv": lambda: _norse("bn"),
         "3 recurrent_chain": lambda: _norse("rec"), "4 sinabs_nir (norse)": _sinabs,
         "5 snntorch_rleaky": _rleaky}
NIR = {"4 sinabs_nir (norse)", "5 snntorch_rleaky"}
KEY = {"1 norse_mlp": "mlp", "2 norse_bn_conv": "bn", "3 recurrent_chain": "rec",
       "4 sinabs_nir (norse)": "sinabs", "5 snntorch_rleaky": "rleaky"}


def _row(case: str) -> dict:
    return ROWS.setdefault(case, {"case": case})


# ---------------------------------------------------------------------------------------------
# (a) float IR == the user's model; (c) float vs integer class agreement


@pytest.mark.parametrize("case", list(CASES))
def test_float_ir_equals_the_user_model(case):
    user, net, _, shape = CASES[case]()
    x = fm.encode(fm.digits()[2][:64], shape)
    theirs = user(x / fm.GAIN if case in NIR else x)
    ours = dynamics.run(net, x)[-1]
    row = _row(case)
    row["float==user"] = (f"{'yes' if torch.equal(theirs, ours) else 'NO'} "
                          f"(64, {int(theirs.sum())} sp, {int((theirs != ours).sum())} differ)")
    assert theirs.sum() > 0, "the model is silent: the test would prove nothing"
    assert torch.equal(theirs, ours), f"{int((theirs != ours).sum())} spikes differ"


@pytest.mark.parametrize("case", list(CASES))
def test_float_and_integer_agree_on_the_class(case):
    _, _, compiled, shape = CASES[case]()
    _, _, x, y = fm.digits()
    rep = compare(compiled, x.reshape(len(x), *shape).numpy(), y.numpy())
    row = _row(case)
    row.update(agree=rep.prediction_agreement, float_acc=rep.float_accuracy,
               int_acc=rep.integer_accuracy, train=f"{EPOCHS[KEY[case]]}+"
               f"{QAT_EPOCHS.get(KEY[case], 0)}", out_sp=f"{rep.layers[-1].float_spikes}/"
               f"{rep.layers[-1].integer_spikes}")
    assert rep.samples == 360
    assert rep.layers[-1].float_spikes > 0
    assert rep.prediction_agreement >= AGREEMENT_FLOOR, rep.format()


# ---------------------------------------------------------------------------------------------
# (b) Lava netx == the integer model, or refused by name


def _lava_exact(compiled, shape, tmp_path) -> tuple[int, int]:
    from rewire.export.lava_run import run_netx

    path = netx.write(compiled, tmp_path / "m.net")
    x = fm.digits()[2][:10]
    payload = sim.encode_input(compiled, x.reshape(10, *shape).numpy())
    ref = sim.simulate(compiled, payload)[-1]
    got = run_netx(path, payload, aligned=True)
    exact = sum(np.array_equal(got[:, b], ref[:, b]) for b in range(10))
    return exact, int(ref.sum())


@pytest.mark.lava
@requires_lava
@pytest.mark.parametrize("case", ["1 norse_mlp", "2 norse_bn_conv", "3 recurrent_chain",
                                  "4 sinabs_nir (norse)", "5 snntorch_rleaky"])
def test_lava_netx_equals_the_integer_model(case, tmp_path):
    _, _, compiled, shape = CASES[case]()
    exact, spikes = _lava_exact(compiled, shape, tmp_path)
    _row(case)["lava"] = f"{exact}/10, {spikes} output sp"
    assert spikes > 0 and exact == 10


def test_bn_conv_int_onnx_equals_the_integer_model(tmp_path):
    _, net, compiled, shape = _norse("bn")
    assert net.layers[0].synapse.bias is not None  # BatchNorm folded into conv1's bias
    path = onnx_int.write(compiled, tmp_path / "m_int.onnx")
    x = fm.digits()[2][:64]
    payload = sim.encode_input(compiled, x.reshape(64, *shape).numpy())
    ref = sim.simulate(compiled, payload)[-1]
    assert ref.sum() > 0
    np.testing.assert_array_equal(onnx_int.run(path, payload), ref)


def test_sinabs_semantics_are_refused_by_netx_by_name(tmp_path):
    _, net, compiled, _ = _sinabs("sinabs")
    assert net.layers[0].neuron.reset == "subtract"
    with pytest.raises(ExportError, match=r"layer conv1 \(conv1\) is a IF neuron") as exc:
        netx.write(compiled, tmp_path / "s.net")
    msg = str(exc.value)
    assert "reset = 'subtract'" in msg and "max_spikes" in msg
    ROWS.setdefault("4b sinabs_nir (sinabs)", {"case": "4b sinabs_nir (sinabs)"})["lava"] = \
        "netx refused: " + msg[:60] + "..."


def test_zz_table():
    """Prints the figures (run with ``-s``)."""
    head = (f"{'case':<24}{'epochs':>7}  {'float IR==user':<34}{'agree':>8}{'float':>8}"
            f"{'int':>8}{'out sp f/i':>12}  lava / netx")
    lines = [head, "(epochs: plain + on the chip's grid; agree, float, int, out sp: the 360 "
                   "digits test samples)"]
    for case, r in ROWS.items():
        pct = lambda k: f"{r[k]:.2%}" if isinstance(r.get(k), float) else "-"  # noqa: E731
        lines.append(f"{case:<24}{r.get('train', '-'):>7}  {r.get('float==user', '-'):<34}"
                     f"{pct('agree'):>8}{pct('float_acc'):>8}{pct('int_acc'):>8}"
                     f"{r.get('out_sp', '-'):>12}  {r.get('lava', '-')}")
    print("\n" + "\n".join(lines))
