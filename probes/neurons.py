"""Neurons that write a token: congruence, activation, prediction, and their causal effect.

The 'an' neuron (GPT-2 large, L31.N892) is the example: its output weights point
along the unembedding of " an" (*congruence*: ``W_out[l][n] · W_U[:, " an"]``),
it fires when the model is about to say " an", and patching it alone recovers
about half of the logit difference. A *neuron* is one hidden unit of an MLP: in
GPT-2 one GELU unit; in gated MLPs (Llama, SmolLM2) one unit of
``act(gate(x)) * up(x)``, i.e. one row of the down projection ``W_out``. Its
activation is the value at ``mlp.hook_post``. Weights are read in compatibility
mode, where the unembedding is centred, so congruences compare tokens fairly.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .evidence import probe
from .forward import batches, final_logits, input_device
from .linearise import post_norm_gain
from .model_state import memo, model_name
from .results import Result
from .sites import hook_of, neuron_label, parse_neuron


def _single_token(model, token: str) -> int:
    ids = model.tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(f"token {token!r} is {len(ids)} tokens {pieces}; congruence needs one token")
    return ids[0]


def _weights(model):
    """What each neuron writes, flattened to (layer·neuron) × d_model, and ``W_U``, float32.

    A neuron writes its row of ``W_out``; where a norm follows the MLP (Gemma 2 and 3), the
    direction that reaches the stream is that row times the norm's gain (`probes.linearise`;
    the norm's 1/RMS is positive and the same for every neuron of a layer on a given input,
    so it is left out: congruences rank neurons within a layer exactly)."""
    w_out = model.W_out.detach().float()
    gains = [post_norm_gain(model, layer, "mlp") for layer in range(model.cfg.n_layers)]
    if any(g is not None for g in gains):
        w_out = torch.stack([w if g is None else w * g.to(w.device) for w, g in zip(w_out, gains)])
    return w_out.reshape(-1, model.cfg.d_model), model.W_U.detach().float()


@dataclass(frozen=True, eq=False, repr=False)
class NeuronCongruence(Result):
    """Every neuron's congruence with one token, ranked; for the top ``k``, the token's rank
    among all tokens in that neuron's congruence (1 = the token this neuron writes most)."""

    token: str
    labels: tuple[str, ...]
    congruence: np.ndarray
    token_rank: np.ndarray
    all_mean: float = 0.0
    all_std: float = 1.0

    kind = "neuron_congruence"
    title = "Neuron congruence with a token"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"neuron": self.labels, "congruence": self.congruence,
                             "token_rank_in_neuron": self.token_rank})

    def top(self, k: int = 5) -> pd.DataFrame:
        return self.df.head(k)

    def summary(self) -> dict:
        return {"token": self.token, "top_neuron": self.labels[0],
                "top_congruence": float(self.congruence[0]),
                "token_rank_in_top_neuron": int(self.token_rank[0]),
                "z_score_of_top": float((self.congruence[0] - self.all_mean) / self.all_std)}

    def figure(self) -> dict:
        return {"type": "bar", "x": list(self.labels[:20]), "y": self.congruence[:20].tolist(),
                "xlabel": "neuron", "ylabel": f"congruence with {self.token!r}"}


@probe
def neuron_congruence(model, token: str, *, k: int = 20) -> NeuronCongruence:
    """Rank every MLP neuron by ``W_out[l][n] · W_U[:, token]``; report the top ``k``."""
    token_id = _single_token(model, token)
    w_out, w_u = _weights(model)
    with torch.inference_mode():
        scores = w_out @ w_u[:, token_id]
        top = scores.topk(k)
        per_token = w_out[top.indices] @ w_u  # k × vocab
        ranks = 1 + (per_token > per_token[:, token_id:token_id + 1]).sum(-1)
    d_mlp = model.cfg.d_mlp
    return NeuronCongruence(
        model=model_name(model), prompt_set="(weights)", token=token,
        labels=tuple(neuron_label(int(i) // d_mlp, int(i) % d_mlp) for i in top.indices),
        congruence=top.values.cpu().numpy(), token_rank=ranks.cpu().numpy(),
        all_mean=float(scores.mean()), all_std=float(scores.std()))


@dataclass(frozen=True, eq=False, repr=False)
class ExclusivePairs(Result):
    """Neuron–token pairs that are each other's best match: the token is the neuron's most
    congruent token and the neuron is the token's most congruent neuron."""

    neurons: tuple[str, ...]
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    congruence: np.ndarray
    searched_layers: tuple[int, ...]

    kind = "exclusive_pairs"
    title = "Exclusive neuron–token pairs"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"neuron": self.neurons, "token": self.tokens, "congruence": self.congruence})

    def summary(self) -> dict:
        return {"pairs": len(self.neurons), "layers_searched": len(self.searched_layers),
                "top_pair": f"{self.neurons[0]} {self.tokens[0]!r}" if self.neurons else "none"}


@probe
def exclusive_neuron_tokens(model, layers=None, *, k: int = 20, chunk: int = 2048) -> ExclusivePairs:
    """Search neurons of ``layers`` (default: all) for mutually best neuron–token pairs,
    ranked by congruence; the vocabulary is scanned in chunks of neurons."""
    layers = tuple(range(model.cfg.n_layers)) if layers is None else tuple(sorted(layers))
    d_mlp = model.cfg.d_mlp

    def compute():
        w_out, w_u = _weights(model)
        rows = torch.cat([torch.arange(l * d_mlp, (l + 1) * d_mlp) for l in layers])
        best_token, best_token_score = [], []
        token_best = torch.full((w_u.shape[1],), -float("inf"))
        token_best_row = torch.zeros(w_u.shape[1], dtype=torch.long)
        with torch.inference_mode():
            for start in range(0, len(rows), chunk):
                block = rows[start:start + chunk]
                scores = w_out[block] @ w_u  # neurons × vocab
                value, index = scores.max(dim=1)
                best_token.append(index)
                best_token_score.append(value)
                column_best, column_row = scores.max(dim=0)
                better = column_best > token_best
                token_best[better] = column_best[better]
                token_best_row[better] = block[column_row[better]]
        best_token, best_token_score = torch.cat(best_token), torch.cat(best_token_score)
        mutual = token_best_row[best_token] == rows
        order = best_token_score[mutual].argsort(descending=True)[:k]
        return rows[mutual][order], best_token[mutual][order], best_token_score[mutual][order]

    neuron_rows, token_ids, scores = memo(model, ("exclusive", layers, k), compute)
    return ExclusivePairs(
        model=model_name(model), prompt_set="(weights)",
        neurons=tuple(neuron_label(int(r) // d_mlp, int(r) % d_mlp) for r in neuron_rows),
        tokens=tuple(model.tokenizer.decode([int(t)]) for t in token_ids),
        token_ids=tuple(int(t) for t in token_ids), congruence=scores.numpy(), searched_layers=layers)


def _activations(model, tokenized, layers: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """``mlp.hook_post`` of ``layers`` at every position (batch × pos × d_mlp), one cached pass."""

    def compute():
        device = input_device(model)
        parts: dict[int, list] = {layer: [] for layer in layers}
        for tokens, _ in batches(tokenized):
            def keep(layer):
                return lambda activation, hook: parts[layer].append(activation.float().cpu())
            with torch.inference_mode():
                model.run_with_hooks(tokens.to(device), return_type=None, fwd_hooks=[
                    (hook_of("neuron", layer), keep(layer)) for layer in layers])
        return {layer: torch.cat(chunks) for layer, chunks in parts.items()}

    return memo(model, ("mlp_post", tokenized.key, layers), compute)


@dataclass(frozen=True, eq=False, repr=False)
class NeuronActivations(Result):
    """Activations of ``neurons`` at each prompt's final position (``values``: neuron × prompt),
    and at every position (``per_position[neuron][prompt]``) when asked for."""

    neurons: tuple[str, ...]
    prompts: tuple[str, ...]
    values: np.ndarray
    per_position: tuple = ()

    kind = "neuron_activations"
    title = "Neuron activations at the answer position"

    @property
    def df(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.values.T, columns=list(self.neurons))
        frame.insert(0, "prompt", self.prompts)
        return frame

    def summary(self) -> dict:
        return {f"{n} mean": float(v.mean()) for n, v in zip(self.neurons, self.values)}


@probe
def neuron_activations(model, prompts, neurons, *, all_positions: bool = False,
                       prepend_bos: bool | None = None) -> NeuronActivations:
    """Activations (``mlp.hook_post``) of ``neurons`` (``["L25N1527", ...]``) on every prompt."""
    tokenized = prompts.tokenize(model, prepend_bos)
    parsed = [parse_neuron(model, n) for n in neurons]
    acts = _activations(model, tokenized, tuple(sorted({l for l, _ in parsed})))
    rows = torch.arange(len(tokenized.lengths))
    final = tokenized.final_positions
    values = np.stack([acts[l][rows, final, n].numpy() for l, n in parsed])
    per_position = (tuple(tuple(acts[l][j, :length, n].numpy() for j, length in enumerate(tokenized.lengths))
                          for l, n in parsed) if all_positions else ())
    return NeuronActivations(model=tokenized.model_name, prompt_set=prompts.name,
                             neurons=tuple(neuron_label(*p) for p in parsed), prompts=prompts.prompts,
                             values=values, per_position=per_position)


def bootstrap_ci(x: np.ndarray, y: np.ndarray, statistic, samples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)`` over resampled prompts (seeded)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), size=(samples, len(x)))
    stats = np.array([statistic(x[p], y[p]) for p in picks])
    stats = stats[np.isfinite(stats)]
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(stats, tail)), float(np.percentile(stats, 100 - tail))) if len(stats) else (
        float("nan"), float("nan"))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def permutation_p_value(x: np.ndarray, y: np.ndarray, samples: int = 999, seed: int = 0) -> float:
    """Two-sided permutation p-value of Pearson r: (1 + #shuffles with |r| at least as large)
    / (1 + ``samples``), ``y`` shuffled against ``x`` (seeded). NaN when either never varies."""
    r = pearson(x, y)
    if not np.isfinite(r):
        return float("nan")
    rng = np.random.default_rng(seed)
    shuffled = np.take_along_axis(np.broadcast_to(y, (samples, len(y))), rng.random((samples, len(y))).argsort(1), 1)
    xc, yc = x - x.mean(), shuffled - shuffled.mean(1, keepdims=True)
    rs = (yc @ xc) / (np.linalg.norm(xc) * np.linalg.norm(yc, axis=1))
    return float((1 + (np.abs(rs) >= abs(r) - 1e-12).sum()) / (1 + samples))


@dataclass(frozen=True, eq=False, repr=False)
class NeuronPredictionCorrelation(Result):
    """Over a prompt set: does the neuron fire when the model predicts the token?
    Pearson ``r`` between the neuron's activation and the token's logit (or probability)
    at the final position, with a 95% bootstrap interval over prompts and a two-sided
    permutation p-value (`permutation_p_value`)."""

    neuron: str
    token: str
    measure: str
    prompts: tuple[str, ...]
    activation: np.ndarray
    prediction: np.ndarray
    r: float
    ci: tuple[float, float]
    p_value: float = float("nan")

    kind = "neuron_correlation"
    title = "Neuron activation against the model's prediction"

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": self.prompts, "activation": self.activation,
                             f"{self.measure}({self.token!r})": self.prediction})

    def summary(self) -> dict:
        return {"neuron": self.neuron, "token": self.token, "r": self.r, "ci_low": self.ci[0],
                "ci_high": self.ci[1], "p_value": self.p_value, "n_prompts": len(self.prompts)}

    def p_values(self) -> dict[str, float]:
        return {} if math.isnan(self.p_value) else {"p_value (r = 0, permutation)": self.p_value}

    def figure(self) -> dict:
        return {"type": "scatter", "x": self.activation.tolist(), "y": self.prediction.tolist(),
                "labels": list(self.prompts), "xlabel": f"{self.neuron} activation",
                "ylabel": f"{self.measure} of {self.token!r}", "title": f"r = {self.r:.2f}"}


@probe
def neuron_prediction_correlation(model, prompts, neuron, token: str, *, measure: str = "logit",
                                  prepend_bos: bool | None = None) -> NeuronPredictionCorrelation:
    """Correlate ``neuron``'s final-position activation with the model's ``measure``
    (``"logit"`` or ``"prob"``) of ``token`` over the prompts."""
    if measure not in ("logit", "prob"):
        raise ValueError(f"measure {measure!r}: choose 'logit' or 'prob'")
    token_id = _single_token(model, token)
    activations = neuron_activations(model, prompts, [neuron], prepend_bos=prepend_bos)
    logits = final_logits(model, prompts.tokenize(model, prepend_bos))
    prediction = (logits.softmax(-1) if measure == "prob" else logits)[:, token_id].numpy()
    x = activations.values[0]
    return NeuronPredictionCorrelation(
        model=activations.model, prompt_set=prompts.name, neuron=activations.neurons[0], token=token,
        measure=measure, prompts=prompts.prompts, activation=x, prediction=prediction,
        r=pearson(x, prediction), ci=bootstrap_ci(x, prediction, pearson),
        p_value=permutation_p_value(x, prediction))
