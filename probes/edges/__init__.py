"""Edge-level circuits: the edge graph (`graph`), edge attribution by EAP and EAP-IG
(`attribution`), exact edge patching (`patching`), edge circuits judged by faithfulness, random
edge sets and MIB's curve (`circuits`), completeness and minimality (`knockouts`), all on the
batched masked passes of `runs`, and MIB's circuit JSON (`mib`).

An edge circuit is judged by the node criteria's names (`circuitcheck.probes.faithfulness`,
`random_circuit_test`, `completeness`, `minimality`, `faithfulness_curve`), which hand it here."""

from ..renamed import moved_names
from .attribution import EdgeScores, edge_attribution
from .circuits import EdgeFaithfulness, EdgeFaithfulnessCurve, EdgeRandomCircuitTest
from .graph import EdgeCircuit, EdgeGraph, edge_graph, parse_edge
from .mib import from_mib, to_mib
from .patching import EdgePatching, edge_patch, edge_patch_scores

# The researcher names, as circuitcheck.edges offers them (the Results are in circuitcheck.results).
__all__ = ["EdgeCircuit", "EdgeGraph", "edge_attribution", "edge_graph", "edge_patch", "edge_patch_scores",
           "from_mib", "parse_edge", "to_mib"]

# The last release's names here, for one release, with a warning: the edge criteria (one name each
# now, for node and edge circuits), and plumbing imported from its module.
_CRITERIA = {"edge_faithfulness": "faithfulness", "edge_random_circuit_test": "random_circuit_test",
             "edge_faithfulness_curve": "faithfulness_curve", "edge_completeness": "completeness",
             "edge_minimality": "minimality"}
__getattr__ = moved_names(
    __name__,
    {"edge_faithfulness": f"{__name__}.circuits", "edge_random_circuit_test": f"{__name__}.circuits",
     "edge_faithfulness_curve": f"{__name__}.circuits", "edge_completeness": f"{__name__}.knockouts",
     "edge_minimality": f"{__name__}.knockouts", "is_edge_circuit": f"{__name__}.graph",
     "n_edges_formula": f"{__name__}.graph", "mib_names": f"{__name__}.mib"},
    {old: f"`from circuitcheck import {new}`, one name for node and edge circuits (give it "
          f"ablation=\"patching\" for {old}'s default)" for old, new in _CRITERIA.items()})
del moved_names, _CRITERIA
