"""Where the logit difference comes from: logit lens, and layer and head attribution.

The final residual stream is a sum of components (embeddings, each attention
layer's and each MLP's output, or each head's output). The logit difference is
linear in it once the final norm's scale is fixed, so with that cached scale
(folded weights, centred unembedding: compatibility mode) each component's
*direct* contribution is ``(component / scale) · (W_U[:, correct] − W_U[:, incorrect])``.
Summed over embeddings, attention and MLP layers (and the unembedding's bias, where
folding a LayerNorm left one) it gives back the model's logit difference exactly (direct
logit attribution; TransformerLens's ``decompose_resid`` + ``apply_ln_to_stack``). Heads
add up to their layer's attention contribution with the output bias ``b_O`` as a part
of its own; where a norm follows each sublayer (Gemma 2 and 3), each head's output goes
through it with its cached scale (`probes.linearise`).

The logit lens applies the same projection to the *accumulated* stream before
and after each layer: where the difference forms. The probability of each
answer read off each layer re-normalises that layer's stream with the final
norm and unembeds it (nostalgebraist's logit lens).
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from .evidence import probe
from .forward import final_norm_device
from .linearise import capped, post_norm_note, soft_cap_note, through_post_norm
from .observe import Observation, observe
from .results import Result, best_first
from .sites import head_label, hook_of, layer_label


def answer_directions(model, observation: Observation) -> Float[Tensor, "batch d_model"]:
    """``W_U[:, correct] − W_U[:, incorrect]`` for each prompt."""
    w_u = model.W_U.detach().float().cpu()
    ids = observation.tokenized.answer_ids
    return w_u[:, ids[:, 0]].T - w_u[:, ids[:, 1]].T


def scale_like_final_norm(model, stack: Tensor, observation: Observation) -> Tensor:
    """Apply the final norm with its cached scale: centre (LayerNorm only), divide by scale."""
    if model.cfg.normalization_type in ("LN", "LNPre"):
        stack = stack - stack.mean(dim=-1, keepdim=True)
    scale = observation.final.get("ln_final.hook_scale")
    return stack if scale is None else stack / scale


def project(model, stack: Float[Tensor, "component batch d_model"], observation: Observation):
    """Each component's direct contribution to each prompt's logit difference."""
    scaled = scale_like_final_norm(model, stack, observation)
    return (scaled * answer_directions(model, observation)).sum(-1).numpy()


def _observed(model, prompts, prepend_bos, probe: str):
    tokenized = prompts.tokenize(model, prepend_bos)
    tokenized.require_single_token(probe)
    return tokenized, observe(model, tokenized)


@dataclass(frozen=True, eq=False, repr=False)
class LogitLens(Result):
    """Logit difference and answer probabilities read off the residual stream at each layer.

    ``labels``: ``L0 pre`` (the embeddings entering layer 0), ``L0 mid`` (after its
    attention), …, ``final``. ``logit_diff``, ``correct_prob``, ``incorrect_prob``:
    label × prompt arrays.
    """

    labels: tuple[str, ...]
    logit_diff: np.ndarray
    correct_prob: np.ndarray
    incorrect_prob: np.ndarray

    kind = "logit_lens"
    title = "Logit lens: logit difference and answer probability across layers"

    @property
    def mean(self) -> np.ndarray:
        """Mean logit difference over prompts, per label."""
        return self.logit_diff.mean(axis=1)

    def forms_at(self, fraction: float = 0.5) -> str:
        """The first label where the mean difference reaches ``fraction`` of its final value."""
        final = self.mean[-1]
        reached = self.mean >= fraction * final if final >= 0 else self.mean <= fraction * final
        return self.labels[int(np.argmax(reached))]  # the final label always qualifies

    def layer_of(self, label: str) -> int:
        """``'L12 mid'`` → 12; ``'final'`` → n_layers."""
        return 1 + int(self.labels[-2].split()[0][1:]) if label == "final" else int(label.split()[0][1:])

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"site": self.labels, "mean_logit_diff": self.mean,
                             "mean_correct_prob": self.correct_prob.mean(axis=1),
                             "mean_incorrect_prob": self.incorrect_prob.mean(axis=1)})

    def summary(self) -> dict:
        return {"final_mean": float(self.mean[-1]), "forms_at (50%)": self.forms_at(0.5),
                "n_prompts": self.logit_diff.shape[1]}

    def figure(self) -> dict:
        return {"type": "line", "x": list(self.labels), "xlabel": "residual stream",
                "ylabel": "mean logit difference", "right_label": "mean probability",
                "right_axis": ["P(correct)", "P(incorrect)"],
                "series": {"logit difference": self.mean.tolist(),
                           "P(correct)": self.correct_prob.mean(axis=1).tolist(),
                           "P(incorrect)": self.incorrect_prob.mean(axis=1).tolist()}}


def accumulated_resid(model, observation: Observation) -> tuple[Tensor, list[str]]:
    """The residual stream before each layer, after each layer's attention (not in models
    whose attention and MLP read the same stream in parallel: GPT-NeoX, GPT-J), and at the end."""
    stack, labels = [], []
    for layer in range(model.cfg.n_layers):
        for stage in ("pre", "mid"):
            if hook_of(f"resid_{stage}", layer) not in observation.final:
                continue
            stack.append(observation.final[hook_of(f"resid_{stage}", layer)])
            labels.append(f"L{layer} {stage}")
    stack.append(observation.final[hook_of("resid_post", model.cfg.n_layers - 1)])
    return torch.stack(stack), labels + ["final"]


@probe
def logit_lens(model, prompts, *, prepend_bos: bool | None = None, **older) -> LogitLens:
    """The logit difference (cached final-norm scale) and answer probabilities
    (re-normalised stream, unembedded) at every point of the residual stream. To follow
    one token instead (the prompts then need no answers): `token_lens`."""
    if set(older) - {"token"}:
        raise TypeError(f"logit_lens() got an unexpected keyword argument {sorted(set(older) - {'token'})[0]!r}")
    if "token" in older:
        from .logits import token_lens

        warnings.warn("logit_lens(model, prompts, token=t) is now token_lens(model, prompts, t); the older form "
                      "will be refused in the next release", DeprecationWarning, stacklevel=4)
        return token_lens(model, prompts, older["token"], prepend_bos=prepend_bos)
    tokenized, observation = _observed(model, prompts, prepend_bos, "logit_lens")
    stack, labels = accumulated_resid(model, observation)
    ids = tokenized.answer_ids
    probs = []
    device = final_norm_device(model)
    with torch.inference_mode():
        for resid in stack:
            normalized = model.ln_final(resid.to(device=device, dtype=model.cfg.dtype)[:, None])[:, 0]
            logits = capped(model, model.unembed(normalized[:, None])[:, 0].float()).cpu()
            probs.append(logits.softmax(-1).gather(1, ids))
    probs = torch.stack(probs).numpy()
    return LogitLens(model=tokenized.model_name, prompt_set=prompts.name, labels=tuple(labels),
                     logit_diff=project(model, stack, observation) + unembed_bias(model, tokenized),
                     correct_prob=probs[..., 0], incorrect_prob=probs[..., 1],
                     notes_text=tuple(soft_cap_note(model)))


@dataclass(frozen=True, eq=False, repr=False)
class LayerAttribution(Result):
    """Direct contribution of the embeddings and of each attention and MLP layer to the
    logit difference; ``values`` is component × prompt and sums to the logit difference
    (before the cap, on a model that soft-caps its logits: see ``notes()``)."""

    labels: tuple[str, ...]
    values: np.ndarray
    logit_diff: np.ndarray

    kind = "layer_attribution"
    title = "Layer attribution: direct contribution to the logit difference"

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(axis=1)

    @property
    def total(self) -> np.ndarray:
        """Sum of all components per prompt: the model's logit difference."""
        return self.values.sum(axis=0)

    def top(self, k: int = 5) -> pd.DataFrame:
        """The k components with the largest mean contribution."""
        return self.df.nlargest(k, "mean")

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"component": self.labels, "mean": self.mean,
                             "min": self.values.min(axis=1), "max": self.values.max(axis=1)})

    def summary(self) -> dict:
        top = self.top(1).iloc[0]
        return {"top_component": top["component"], "top_mean": float(top["mean"]),
                "sum_of_means": float(self.mean.sum()), "logit_diff_mean": float(self.logit_diff.mean())}

    def figure(self) -> dict:
        return {"type": "bar", "x": list(self.labels), "y": self.mean.tolist(),
                "xlabel": "component", "ylabel": "mean direct contribution"}



def unembed_bias(model, tokenized) -> np.ndarray:
    """``b_U[correct] − b_U[incorrect]`` per prompt (zero without an unembedding bias)."""
    b_u = getattr(model, "b_U", None)
    if b_u is None:
        return np.zeros(len(tokenized.answer_ids))
    picked = b_u.detach().float().cpu()[tokenized.answer_ids]
    return (picked[:, 0] - picked[:, 1]).numpy()


@probe
def layer_attribution(model, prompts, *, prepend_bos: bool | None = None) -> LayerAttribution:
    """Embeddings, ``L{l} attn`` and ``L{l} mlp`` contributions to each prompt's logit difference."""
    tokenized, observation = _observed(model, prompts, prepend_bos, "layer_attribution")
    final = observation.final
    stack, labels = [final["hook_embed"]], ["embed"]
    if "hook_pos_embed" in final:
        stack.append(final["hook_pos_embed"])
        labels.append("pos_embed")
    for layer in range(model.cfg.n_layers):
        stack += [final[hook_of("attn_out", layer)], final[hook_of("mlp_out", layer)]]
        labels += [f"L{layer} attn", f"L{layer} mlp"]
    values = project(model, torch.stack(stack), observation)
    bias = unembed_bias(model, tokenized)
    if bias.any():  # a folded final LayerNorm's bias (GPT-2, Pythia)
        values, labels = np.concatenate([values, bias[None]]), labels + ["unembed bias"]
    ids = tokenized.answer_ids
    picked = observation.logits.gather(1, ids).numpy()
    return LayerAttribution(model=tokenized.model_name, prompt_set=prompts.name, labels=tuple(labels),
                            values=values, logit_diff=picked[:, 0] - picked[:, 1],
                            notes_text=tuple(soft_cap_note(model)))


@dataclass(frozen=True, eq=False, repr=False)
class HeadAttribution(Result):
    """Direct contribution of every attention head to the logit difference.

    ``values``: layer × head × prompt. ``per_head``: the mean over prompts,
    layer × head. Labels are ``L{layer}H{head}``. ``bias``: layer × prompt, the output
    bias ``b_O``'s part (zero where there is none); ``per_layer`` = heads + bias is each
    layer's attention contribution in `layer_attribution`.
    """

    values: np.ndarray
    bias: np.ndarray | None = None

    kind = "head_attribution"
    title = "Head attribution: direct contribution of each head to the logit difference"
    ranked_by = "score"  # ranking(): heads by mean direct contribution, largest first (NaN last)
    score_names = ("recovery", "mean", "abs_mean")  # what `scores_over` can rank by ("recovery": "mean")

    @property
    def per_head(self) -> np.ndarray:
        return self.values.mean(axis=-1)

    def _heads(self) -> list[str]:
        """Every head's label, layer by layer: the order of ``per_head.flatten()``."""
        n_layers, n_heads = self.values.shape[:2]
        return [head_label(l, h) for l in range(n_layers) for h in range(n_heads)]

    def component_scores(self) -> pd.Series:
        """Each head's mean direct contribution, layer by layer (index: ``L9H6``)."""
        return pd.Series(self.per_head.flatten().astype(float), index=self._heads(),
                         name="head attribution (mean direct effect)")

    def ranking(self) -> list[str]:
        """Every head by mean direct contribution, largest first (ties layer by layer, NaN last)."""
        heads = self._heads()
        return [heads[i] for i in best_first(self.per_head.flatten())]

    @property
    def n_prompts(self) -> int:
        return self.values.shape[-1]

    def scores_over(self, prompts=None, by: str = "recovery") -> pd.Series:
        """Each head's mean direct contribution over the prompts at indices ``prompts`` (all when
        None; a repeated index counts twice): ``"mean"`` (``"recovery"`` means it here) or
        ``"abs_mean"``, its size. Named by what ranks by what."""
        if by not in self.score_names:
            raise ValueError(f"score {by!r}: for a HeadAttribution choose one of {', '.join(self.score_names)}")
        rows = np.arange(self.n_prompts) if prompts is None else np.asarray(prompts)
        mean = self.values.reshape(-1, self.n_prompts)[:, rows].mean(axis=1)
        if by == "abs_mean":
            return pd.Series(np.abs(mean), index=self._heads(), name="heads by |direct contribution|")
        return pd.Series(mean, index=self._heads(), name="heads by direct contribution")

    @property
    def per_layer(self) -> np.ndarray:
        """Each layer's attention contribution per prompt (layer × prompt): heads plus bias."""
        return self.values.sum(axis=1) + (0 if self.bias is None else self.bias)

    def value(self, head: str) -> float:
        """Mean contribution of one head, e.g. ``value("L9H6")``."""
        layer, index = (int(x) for x in head[1:].split("H"))
        return float(self.per_head[layer, index])

    @property
    def df(self) -> pd.DataFrame:
        n_layers, n_heads = self.per_head.shape
        return pd.DataFrame({
            "head": [head_label(l, h) for l in range(n_layers) for h in range(n_heads)],
            "layer": np.repeat(np.arange(n_layers), n_heads),
            "index": np.tile(np.arange(n_heads), n_layers),
            "mean": self.per_head.flatten(),
            "min": self.values.min(axis=-1).flatten(),
            "max": self.values.max(axis=-1).flatten(),
        })

    def top(self, k: int = 5) -> pd.DataFrame:
        """The k heads that most increase the logit difference."""
        return self.df.nlargest(k, "mean").reset_index(drop=True)

    def bottom(self, k: int = 5) -> pd.DataFrame:
        """The k heads that most decrease it (e.g. negative name movers)."""
        return self.df.nsmallest(k, "mean").reset_index(drop=True)

    def share_of_top(self, k: int) -> float:
        """Fraction of the total absolute head contribution carried by the top k heads by |mean|."""
        magnitude = np.sort(np.abs(self.per_head).flatten())[::-1]
        total = magnitude.sum()
        return float(magnitude[:k].sum() / total) if total > 0 else float("nan")  # no head contributes: undefined

    def summary(self) -> dict:
        top, bottom = self.top(1).iloc[0], self.bottom(1).iloc[0]
        return {"top_head": top["head"], "top_mean": float(top["mean"]),
                "bottom_head": bottom["head"], "bottom_mean": float(bottom["mean"]),
                "top_5_share": self.share_of_top(5)}

    def figure(self) -> dict:
        n_layers, n_heads = self.per_head.shape
        return {"type": "heatmap", "z": self.per_head.tolist(), "x": [f"H{h}" for h in range(n_heads)],
                "y": [layer_label(l) for l in range(n_layers)], "xlabel": "head", "ylabel": "layer"}


def head_results(model, observation: Observation) -> Float[Tensor, "layer head batch d_model"]:
    """What each head adds to the residual stream at the final position: its ``z`` times its
    slice of ``W_O``, through the post-attention norm where there is one."""
    results = []
    for layer in range(model.cfg.n_layers):
        z = observation.final[hook_of("head_out", layer)]  # batch head d_head
        w_o = model.blocks[layer].attn.W_O.detach().float().cpu()  # head d_head d_model
        results.append(through_post_norm(model, layer, "attn", torch.einsum("bhd,hdm->hbm", z, w_o),
                                         observation.final))
    return torch.stack(results)


def head_biases(model, observation: Observation) -> Float[Tensor, "layer batch d_model"]:
    """What each attention layer's output bias ``b_O`` adds at the final position (zeros without)."""
    n = len(observation.logits)
    biases = []
    for layer in range(model.cfg.n_layers):
        b_o = getattr(model.blocks[layer].attn, "b_O", None)
        b_o = torch.zeros(model.cfg.d_model) if b_o is None else b_o.detach().float().cpu()
        biases.append(through_post_norm(model, layer, "attn", b_o.expand(n, -1), observation.final))
    return torch.stack(biases)


@probe
def head_attribution(model, prompts, *, prepend_bos: bool | None = None) -> HeadAttribution:
    """Per-head direct logit attribution as a layer × head table (``.top(k)``, ``.bottom(k)``)."""
    tokenized, observation = _observed(model, prompts, prepend_bos, "head_attribution")
    stack = head_results(model, observation)
    n_layers, n_heads = stack.shape[:2]
    values = project(model, stack.flatten(0, 1), observation).reshape(n_layers, n_heads, -1)
    return HeadAttribution(model=tokenized.model_name, prompt_set=prompts.name, values=values,
                           bias=project(model, head_biases(model, observation), observation),
                           notes_text=tuple(post_norm_note(model) + soft_cap_note(model)))
