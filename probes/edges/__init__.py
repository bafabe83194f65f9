"""Edge-level circuits: the edge graph (`graph`), edge attribution by EAP and EAP-IG
(`attribution`), exact edge patching (`patching`), edge circuits judged by faithfulness, random
edge sets and MIB's curve (`circuits`), completeness and minimality (`knockouts`), all on the
batched masked passes of `runs`, and MIB's circuit JSON (`mib`)."""

from .attribution import EdgeScores, edge_attribution
from .circuits import (EdgeFaithfulness, EdgeFaithfulnessCurve, EdgeRandomCircuitTest, edge_faithfulness,
                       edge_faithfulness_curve, edge_random_circuit_test)
from .graph import EdgeCircuit, EdgeGraph, edge_graph, is_edge_circuit, n_edges_formula, parse_edge
from .knockouts import edge_completeness, edge_minimality
from .mib import from_mib, mib_names, to_mib
from .patching import EdgePatching, edge_patch, edge_patch_scores

__all__ = ["EdgeCircuit", "EdgeFaithfulness", "EdgeFaithfulnessCurve", "EdgeGraph", "EdgePatching",
           "EdgeRandomCircuitTest", "EdgeScores", "edge_attribution", "edge_completeness", "edge_faithfulness",
           "edge_faithfulness_curve", "edge_graph", "edge_minimality", "edge_patch", "edge_patch_scores",
           "edge_random_circuit_test", "from_mib", "is_edge_circuit", "mib_names", "n_edges_formula", "parse_edge",
           "to_mib"]
