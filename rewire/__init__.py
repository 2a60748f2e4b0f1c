"""rewire: Gradient Rewiring for spiking neural networks, from training under a chip's
budget to Lava netx, ONNX and NIR; and Gradient Rewiring for editable GNNs.

Sub-packages follow the pipeline: :mod:`rewire.hw_profiles` (chip budgets),
:mod:`rewire.training` (GradR), :mod:`rewire.compiler` (fixed point, cores, integer model) and
:mod:`rewire.export` (netx, ONNX, report, CLI).
"""

__version__ = "0.1.0"
