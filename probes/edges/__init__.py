"""Edge-level circuits: the edge graph (`graph`), edge attribution by EAP and EAP-IG
(`attribution`), exact edge patching (`patching`), all on the batched masked passes of `runs`,
the edge engine of the circuit criteria (`setup`, with the edge Results in `circuits`), and MIB's
circuit JSON (`mib`).

An edge circuit is judged by the one set of circuit criteria (`probes.criteria`: `faithfulness`,
`random_circuit_test`, `completeness`, `minimality`, `faithfulness_curve`), on this engine."""

from ..renamed import moved_names
from .attribution import EdgeScores, edge_attribution
from .circuits import EdgeFaithfulness, EdgeFaithfulnessCurve, EdgeRandomCircuitTest
from .graph import EdgeCircuit, EdgeGraph, edge_graph, parse_edge
from .mib import from_mib, to_mib
from .patching import EdgePatching, edge_patch, edge_patch_scores

# The researcher names, as circuitcheck.edges offers them (the Results are in circuitcheck.results).
__all__ = ["EdgeCircuit", "EdgeGraph", "edge_attribution", "edge_graph", "edge_patch", "edge_patch_scores",
           "from_mib", "parse_edge", "to_mib"]

# The last release's names here, for one release, with a warning: the edge criteria (one function
# each now, for node and edge circuits: the same objects), and plumbing imported from its module.
_CRITERIA = {"edge_faithfulness": "faithfulness", "edge_random_circuit_test": "random_circuit_test",
             "edge_faithfulness_curve": "faithfulness_curve", "edge_completeness": "completeness",
             "edge_minimality": "minimality"}
_CRITERIA_HOME = f"{__name__.rpartition('.')[0]}.criteria"
__getattr__ = moved_names(
    __name__,
    {**{old: f"{_CRITERIA_HOME}:{new}" for old, new in _CRITERIA.items()}, "is_edge_circuit": _CRITERIA_HOME,
     "n_edges_formula": f"{__name__}.graph", "mib_names": f"{__name__}.mib"},
    {old: f"`from circuitcheck import {new}`, one function for node and edge circuits (give it "
          f"ablation=\"patching\" for {old}'s old default)" for old, new in _CRITERIA.items()})
del moved_names, _CRITERIA, _CRITERIA_HOME
