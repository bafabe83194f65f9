"""Circuits as sets of edges: ``from circuitcheck.edges import EdgeCircuit, edge_attribution``.

The edge graph of a model (`EdgeGraph`: the input embedding, every head and MLP as senders;
every head's query, every key/value head's key and value, every MLP's input and the logits
as receiving ends) labels edges as researchers write them: ``L5H5 → L9H6.q``,
``MLP0 → L3KV0.v``, ``L9H6 → logits``. `edge_attribution` scores every edge by EAP or
EAP-IG in a few passes; `edge_patch` and `edge_patch_scores` give exact edge patching to
check them against. An `EdgeCircuit` (or ``scores.circuit(k)``) is judged by the same
`faithfulness`, `random_circuit_test`, `completeness`, `minimality` and
`faithfulness_curve` as a node circuit. `to_mib` and `from_mib` write and read the MIB
circuit track's JSON.
"""

from circuitcheck.probes.edges import (EdgeCircuit, EdgeGraph, edge_attribution, edge_graph, edge_patch,
                                       edge_patch_scores, from_mib, parse_edge, to_mib)

__all__ = ["EdgeCircuit", "EdgeGraph", "edge_attribution", "edge_graph", "edge_patch", "edge_patch_scores",
           "from_mib", "parse_edge", "to_mib"]
