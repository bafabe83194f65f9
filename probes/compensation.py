"""Compensation: do other heads take over when some are knocked out?

Direct logit attribution (`head_attribution`) gives each head's direct effect on the logit
difference. Ablate some heads (every position) and measure every head's direct effect again:
a head whose effect rises compensates for the ablated ones, as the IOI paper's backup name
movers do when the name movers are ablated. The ablated run is linearised exactly as the
plain one (`probes.linearise`: the final norm's scale and any post-sublayer norms are read
from that same run).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .ablation_values import ablation_values, check_ablation
from .attribution import head_attribution, head_results, project
from .evidence import probe
from .forward import at_positions, input_device
from .input_errors import check_count
from .linearise import scale_hooks
from .observe import Observation
from .results import Result
from .self_checks import require_trusted
from .sites import head_label, head_order, hook_of, layer_label, parse_head


@dataclass(frozen=True, eq=False, repr=False)
class Compensation(Result):
    """Backup heads: every head's direct effect on the metric (direct logit attribution,
    `head_attribution`) in the plain model and with the ``ablated`` heads ablated.

    ``before`` and ``after``: layer × head (means over prompts). A head whose direct effect
    rises when another is ablated compensates for it, as the IOI paper's backup name movers
    do for the name movers: ``.top_risers(k)``, ``.change_of("L10H2")``.
    """

    ablated: tuple[str, ...]
    ablation: str
    before: np.ndarray
    after: np.ndarray

    kind = "compensation"

    @property
    def title(self) -> str:
        return f"Compensation: direct effects with {', '.join(self.ablated)} {self.ablation}-ablated"

    @property
    def change(self) -> np.ndarray:
        return self.after - self.before

    def change_of(self, head: str) -> float:
        layer, index = head_order(head)
        return float(self.change[layer, index])

    @property
    def df(self) -> pd.DataFrame:
        n_layers, n_heads = self.before.shape
        return pd.DataFrame({"head": [head_label(l, h) for l in range(n_layers) for h in range(n_heads)],
                             "before": self.before.flatten(), "after": self.after.flatten(),
                             "change": self.change.flatten(),
                             "ablated": [head_label(l, h) in self.ablated for l in range(n_layers)
                                         for h in range(n_heads)]})

    def top_risers(self, k: int = 5) -> pd.DataFrame:
        """The k heads (not ablated) whose direct effect rises most."""
        k = check_count("k", k, 0, "the number of heads to list, e.g. top_risers(5)")
        return self.df[~self.df["ablated"]].nlargest(k, "change").reset_index(drop=True)

    def summary(self) -> dict:
        top = self.top_risers(1).iloc[0]
        return {"top riser": top["head"], "its change": float(top["change"]),
                "sum of direct effects before": float(self.before.sum()),
                "after": float(self.after.sum())}

    def figure(self) -> dict:
        n_layers, n_heads = self.before.shape
        return {"type": "heatmap", "z": self.change.tolist(), "x": [f"H{h}" for h in range(n_heads)],
                "y": [layer_label(l) for l in range(n_layers)], "xlabel": "head", "ylabel": "layer", "diverging": True,
                "title": "change in direct effect (after − before)"}


@probe
def compensation(model, prompts, ablated, *, ablation: str = "mean", reference=None, seed: int = 0,
                 prepend_bos: bool | None = None) -> Compensation:
    """Per-head direct effects with the ``ablated`` heads ablated (every position; ``mean`` over
    ``reference``, ``resample`` or ``zero``: `probes.ablation_values`) against the plain model's."""
    ablated = [ablated] if isinstance(ablated, str) else list(ablated)
    if not ablated:
        raise ValueError("ablated=[] names no head; give the heads to knock out, e.g. ['L9H6']")
    check_ablation(ablation, seed)
    require_trusted(model, "compensation", "hooks")
    tok = prompts.tokenize(model, prepend_bos)
    tok.require_single_token("compensation")
    heads = sorted({parse_head(model, h, tok.model_name) for h in ablated})
    names = [hook_of("head_out", layer) for layer in range(model.cfg.n_layers)]
    values = ablation_values(model, prompts, names, ablation, reference, seed, prepend_bos)
    before = head_attribution(model, prompts, prepend_bos=prepend_bos)
    device = input_device(model)
    finals = tok.final_positions  # indexed on each activation's own device (`at_positions`)
    final = {}

    def ablate_and_keep(name, layer):
        def hook(z, hook):
            replacement = values.of(name, z)
            for l, h in heads:
                if l == layer:
                    z[:, :, h] = replacement[:, :, h]
            final[name] = at_positions(z, finals).float().cpu()
            return z
        return hook

    def keep(name):
        def hook(a, hook):
            final[name] = at_positions(a, finals).float().cpu()
            return a
        return hook

    hooks = [(name, ablate_and_keep(name, layer)) for layer, name in enumerate(names)]
    hooks += [(name, keep(name)) for name in scale_hooks(model)]  # final and post-norm scales
    with torch.inference_mode():
        logits = at_positions(model.run_with_hooks(tok.tokens.to(device), fwd_hooks=hooks), finals).float().cpu()
    observation = Observation(tok, final, {}, logits)
    stack = head_results(model, observation)
    after = project(model, stack.flatten(0, 1), observation).reshape(*stack.shape[:2], -1).mean(-1)
    return Compensation(model=tok.model_name, prompt_set=prompts.name, ablated=tuple(head_label(*h) for h in heads),
                        ablation=ablation, before=before.per_head, after=after, parts=(before,))
