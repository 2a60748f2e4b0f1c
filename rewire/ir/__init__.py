"""The intermediate representation every frontend produces and the compiler reads.

* :mod:`rewire.ir.nodes`: synapse operators (``Dense``, ``RecurrentDense``, ``Conv2d``,
  ``SumPool2d``, ``Flatten``) and neuron models (``CubaLIF``, ``LIF``, ``IF``, ``CubaLI``,
  ``LI``, ``BitshiftLIF``), each with its own parameters in SI units;
* :mod:`rewire.ir.network`: :class:`~rewire.ir.network.Network`, the checked chain of nodes
  with its input encoding, steps and ``dt``, saved and reloaded by ``to_dict``/``from_dict``;
* :mod:`rewire.ir.dynamics`: the float semantics of every node, written once;
* the compiled network's data, what the compiler produces and the writers read:
  :mod:`rewire.ir.compiled` (``CompiledNetwork``), :mod:`rewire.ir.compiled_layers` (one
  compiled layer class per synapse kind), :mod:`rewire.ir.chip_neurons` (one chip-image class
  per neuron kind) and :mod:`rewire.ir.cores` (``CoreMapping``, where each neuron sits).
"""

from rewire.ir.network import ENCODINGS, IR_VERSION, Layer, Network
from rewire.ir.nodes import (IF, LI, LIF, BitshiftLIF, Conv2d, CubaLI, CubaLIF, Dense,
                             Flatten, RecurrentDense, SumPool2d)

__all__ = ["ENCODINGS", "IR_VERSION", "Layer", "Network", "Dense", "RecurrentDense", "Conv2d",
           "SumPool2d", "Flatten", "CubaLIF", "LIF", "IF", "CubaLI", "LI", "BitshiftLIF"]
