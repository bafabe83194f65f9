"""Labels for model sites that researchers already use: ``L9H6`` (layer 9, head 6),
``L25N1527`` (layer 25, MLP neuron 1527).

Parsing checks the model's size, so a site that does not exist is a clear error
naming the valid range, not an IndexError deep inside a forward pass.
"""

import re


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def neuron_label(layer: int, index: int) -> str:
    return f"L{layer}N{index}"


def _parse(model, site, kind: str, letter: str, per_layer: int, model_name: str) -> tuple[int, int]:
    """``"L<layer><letter><index>"`` or ``(layer, index)``, checked against the model."""
    if isinstance(site, str):
        match = re.match(rf"^L(\d+){letter}(\d+)$", site.strip())
        if not match:
            raise ValueError(f"{kind} {site!r}: write {kind}s as 'L<layer>{letter}<{kind}>', "
                             f"e.g. 'L9{letter}6'")
        layer, index = int(match[1]), int(match[2])
    else:
        layer, index = (int(x) for x in site)
    label, n_layers = f"L{layer}{letter}{index}", model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise ValueError(f"{kind} {label} does not exist: {model_name} has layers 0–{n_layers - 1} "
                         f"({n_layers} layers); choose L0–L{n_layers - 1}")
    if not 0 <= index < per_layer:
        raise ValueError(f"{kind} {label} does not exist: {model_name} has {kind}s 0–{per_layer - 1} "
                         f"per layer; choose {letter}0–{letter}{per_layer - 1}")
    return layer, index


def parse_head(model, head, model_name: str = "the model") -> tuple[int, int]:
    """``"L9H6"`` or ``(9, 6)`` → ``(9, 6)``, checked against the model's layers and heads."""
    return _parse(model, head, "head", "H", model.cfg.n_heads, model_name)


def parse_neuron(model, neuron, model_name: str = "the model") -> tuple[int, int]:
    """``"L31N892"`` or ``(31, 892)`` → ``(31, 892)``, checked against the model's layers and MLP width."""
    return _parse(model, neuron, "neuron", "N", model.cfg.d_mlp, model_name)


_UNIT = re.compile(r"(?:^|\s)L(?P<layer>\d+)(?:(?P<letter>KV|H|N)(?P<index>\d+))?(?=\s|$)")
_POS = re.compile(r"\bpos (?P<pos>\d+)(?=\s|$)")


def label_parts(label: str) -> dict | None:
    """The indices a site label names: ``"L9H6"`` → ``{layer: 9, letter: "H", index: 6}``,
    ``"resid_pre L5 pos 10 ' John'"`` → ``{layer: 5, pos: 10}``, ``"L4KV1 v pos 3"`` → letter
    ``"KV"``; None if it names no layer. The token after the position is ignored."""
    before, _, after = label.strip().partition(" pos ")
    match = _UNIT.search(before)
    if not match:
        return None
    parts = {"layer": int(match["layer"])}
    if match["letter"]:
        parts.update(letter=match["letter"], index=int(match["index"]))
    if after:
        pos = _POS.match("pos " + after)
        if not pos:
            return None
        parts["pos"] = int(pos["pos"])
    return parts
