"""Labels for model sites that researchers already use: ``L9H6`` (layer 9, head 6).

Parsing checks the model's size, so a head that does not exist is a clear error
naming the valid range, not an IndexError deep inside a forward pass.
"""

import re

HEAD = re.compile(r"^L(\d+)H(\d+)$")


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def parse_head(model, head, model_name: str = "the model") -> tuple[int, int]:
    """``"L9H6"`` or ``(9, 6)`` → ``(9, 6)``, checked against the model's layers and heads."""
    if isinstance(head, str):
        match = HEAD.match(head.strip())
        if not match:
            raise ValueError(f"head {head!r}: write heads as 'L<layer>H<head>', e.g. 'L9H6'")
        layer, index = int(match[1]), int(match[2])
    else:
        layer, index = (int(x) for x in head)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if not 0 <= layer < n_layers:
        raise ValueError(f"head {head_label(layer, index)}: {model_name} has layers 0–{n_layers - 1} "
                         f"({n_layers} layers); choose L0–L{n_layers - 1}")
    if not 0 <= index < n_heads:
        raise ValueError(f"head {head_label(layer, index)}: {model_name} has heads 0–{n_heads - 1} "
                         f"per layer; choose H0–H{n_heads - 1}")
    return layer, index
