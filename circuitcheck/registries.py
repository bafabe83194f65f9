"""The tables probes check their string options against: `SWEEPS` (``patch``'s sweeps, as
`Sweep` data), `STEPS` (the feasibility workflow), `METRICS` (``metric=``); and the site
labels and tokenizing the probes share (`Site`, `parse_site`, `tokenize`)."""

from circuitcheck.probes.feasibility import STEPS
from circuitcheck.probes.metrics import METRICS
from circuitcheck.probes.sites import (SWEEPS, Site, Sweep, head_label, neuron_label, parse_head, parse_mlp,
                                       parse_neuron, parse_site)
from circuitcheck.probes.tokens import Tokenized, tokenize, tokenize_pair

__all__ = ["METRICS", "STEPS", "SWEEPS", "Site", "Sweep", "Tokenized", "head_label", "neuron_label", "parse_head",
           "parse_mlp", "parse_neuron", "parse_site", "tokenize", "tokenize_pair"]
