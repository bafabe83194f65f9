"""The self-checks' text and the Hugging Face reference they compare the bridge with.

The text (`self_check_ids`) is the English sentence `TEXT` where the model's tokenizer reads
it, otherwise ordinary words of the model's own vocabulary, cut to its context. The reference
(`HuggingFaceReference`) is what the Hugging Face model with the original weights gives on it,
taken by the loader before compatibility mode rewrites the weights (`keep_hugging_face_reference`).
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

from .model_state import state_of

TEXT = "When Mary and John went to the shops, John gave the bag to"
DRAWN_LENGTH = 12  # tokens drawn from the vocabulary when the tokenizer does not read `TEXT`
REFERENCE_KEY = "hugging_face_reference"  # where `keep_hugging_face_reference` puts it (ModelState.capabilities)
SERIAL_KEY = "hugging_face_reference_serial"  # which reference the memoised checks used


@dataclass(frozen=True)
class HuggingFaceReference:
    """What the Hugging Face model with the original weights gives on ``tokens``: its
    log-probabilities at every position (positions × vocab, float32, CPU)."""

    tokens: tuple[int, ...]
    log_probs: np.ndarray


def hugging_face_reference(hf_model, tokens) -> HuggingFaceReference:
    """Run a Hugging Face model (not wrapped by a bridge: its original weights) on ``tokens``
    (a sequence of ids, cut to the model's context), once, before or apart from the bridge."""
    _check_hugging_face_model(hf_model)
    tokens = list(tokens)
    context = hugging_face_context(hf_model)
    ids = torch.as_tensor(tokens if context is None else tokens[:context], dtype=torch.long)[None]
    device = next(hf_model.parameters()).device
    with torch.inference_mode():
        logits = hf_model(ids.to(device)).logits[0].float()
    return HuggingFaceReference(tuple(int(t) for t in ids[0]), logits.log_softmax(-1).cpu().numpy())


def english_ids(tokenizer) -> list[int] | None:
    """`TEXT`'s ids when ``tokenizer`` reads it: it encodes, no word is the unknown token, and
    the ids decode back to the sentence (spaces aside); otherwise None."""
    try:
        ids = list(tokenizer.encode(TEXT, add_special_tokens=False))
        decoded = tokenizer.decode(ids)
    except Exception:  # noqa: BLE001 - a word-level tokenizer without an unknown token raises on a new word
        return None
    unknown = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unknown is not None and unknown in ids) or "".join(decoded.split()) != "".join(TEXT.split()):
        return None
    return ids


def vocabulary_ids(tokenizer, length: int = DRAWN_LENGTH, vocab_size: int | None = None) -> list[int]:
    """``length`` ordinary (not special) token ids of ``tokenizer``'s own vocabulary, spread evenly
    over it in id order (cycled when it has fewer), the same every time."""
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    ordinary = sorted({int(i) for i in tokenizer.get_vocab().values()} - special)
    if vocab_size is not None:
        ordinary = [i for i in ordinary if i < vocab_size]
    if not ordinary:
        raise ValueError("the tokenizer has no ordinary tokens to draw a self-check text from")
    if len(ordinary) >= length:
        return [ordinary[k * len(ordinary) // length] for k in range(length)]
    return [ordinary[k % len(ordinary)] for k in range(length)]


def self_check_ids(tokenizer, prepended: str | None, n_ctx: int | None = None,
                   vocab_size: int | None = None) -> list[int]:
    """The self-checks' text as ids: what is prepended, then `TEXT` (`english_ids`) or, for a
    tokenizer that does not read it, `vocabulary_ids`; the first ``n_ctx`` of them."""
    start = [] if prepended is None else [tokenizer.convert_tokens_to_ids(prepended)]
    body = english_ids(tokenizer)
    if body is None:
        body = vocabulary_ids(tokenizer, DRAWN_LENGTH, vocab_size)
    ids = start + body
    return ids if n_ctx is None else ids[:max(int(n_ctx), 1)]


def text_ids(tokenizer, prepended: str | None) -> list[int]:
    """The self-check text as a loader tokenizes it before the bridge exists (`self_check_ids`,
    uncut: `hugging_face_reference` cuts it to the Hugging Face model's context)."""
    return self_check_ids(tokenizer, prepended)


def text_tokens(model) -> list[int]:
    """The self-check text tokenized for ``model``: what its prompts get prepended, then `TEXT`
    or words of its vocabulary, cut to its context (``model.cfg.n_ctx``)."""
    from .tokens import prepended

    return self_check_ids(model.tokenizer, prepended(model), int(model.cfg.n_ctx), int(model.cfg.d_vocab))


def hugging_face_context(hf_model) -> int | None:
    """How many positions a Hugging Face model reads (its config's context), or None."""
    config = getattr(hf_model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


HUGGING_FACE_TAKES = ("hugging_face= takes a Hugging Face model with the original weights, loaded apart from the "
                      "bridge (transformers.AutoModelForCausalLM.from_pretrained(...)), or a HuggingFaceReference")


def _is_bridge(value) -> bool:
    """A circuitcheck model (a TransformerBridge, or anything with its hook dictionary and config)."""
    return hasattr(value, "hook_dict") and hasattr(value, "cfg")


def require_model(model, where: str) -> None:
    """Refuse, in one line, a model's name (or anything else that is not a loaded model) where a
    loaded model is needed."""
    if isinstance(model, (str, os.PathLike)):
        raise ValueError(f"{where}({str(model)!r}): give the loaded model, not its name: "
                         f"{where}(load_model({str(model)!r})) (circuitcheck.load_model)")
    if not _is_bridge(model):
        raise ValueError(f"{where}(model={type(model).__name__}): give a model from circuitcheck.load_model(...)")


def _check_hugging_face_model(hf_model) -> None:
    """Refuse, with what ``hugging_face=`` takes, anything that is not a Hugging Face model."""
    if _is_bridge(hf_model):
        raise ValueError("hugging_face=<a model from load_model>: that is a circuitcheck model (a TransformerBridge, "
                         "its weights rewritten by compatibility mode), not the Hugging Face model with the original "
                         f"weights; {HUGGING_FACE_TAKES}. A model from load_model already keeps Hugging Face's "
                         "numbers from load time, and its hugging_face check uses them by default")
    if isinstance(hf_model, (str, os.PathLike)):
        raise ValueError(f"hugging_face={str(hf_model)!r}: a name; {HUGGING_FACE_TAKES}")
    if not hasattr(hf_model, "config") or not hasattr(hf_model, "parameters"):
        raise ValueError(f"hugging_face={type(hf_model).__name__}: {HUGGING_FACE_TAKES}")


def keep_hugging_face_reference(model, reference) -> HuggingFaceReference:
    """Keep a Hugging Face reference on the bridge for its ``hugging_face`` check: a
    `HuggingFaceReference`, or a Hugging Face model with the original weights (run now on the
    self-check text, `text_tokens`). A loader calls it before compatibility mode rewrites the weights."""
    if not isinstance(reference, HuggingFaceReference):
        if reference is getattr(model, "original_model", None):
            raise ValueError("hugging_face=model.original_model: that is the model the bridge wraps (its weights "
                             "rewritten by compatibility mode, its forward run through the bridge), so it agrees by "
                             "construction; give a Hugging Face model loaded separately")
        _check_hugging_face_model(reference)
        reference = hugging_face_reference(reference, text_tokens(model))
    capabilities = state_of(model).capabilities
    capabilities[REFERENCE_KEY] = reference
    capabilities[SERIAL_KEY] = capabilities.get(SERIAL_KEY, 0) + 1  # a new reference: the checks run again
    return reference
