"""Self-checks that hold on any model (issue 30, A.5): the check text is the English sentence
where the model's tokenizer reads it (the models in the reports: unchanged), and otherwise words
of the model's own vocabulary; either way it fits the model's context. So a model over a
handful of words with a context of 8 passes, and its causal probes run; a probe still refuses
when the machinery is really broken."""

from pathlib import Path

import pytest
import torch

from circuitcheck.fixtures import load_model
from circuitcheck.fixtures.loading import boot_bridge
from circuitcheck.probes import PromptSet, ablate, logit_diff
from circuitcheck.probes.model_state import state_of
from circuitcheck.probes.self_check_text import (DRAWN_LENGTH, REFERENCE_KEY, TEXT, english_ids, self_check_ids,
                                                 text_tokens, vocabulary_ids)
from circuitcheck.probes.self_checks import SelfCheckFailed, require_self_check, require_trusted, self_checks

from .test_self_checks import make_hooks_inert

PLANTED = Path(__file__).resolve().parents[1] / "fixtures" / "groundtruth" / "models" / "planted-induction"
WORDS = ["a", "b", "c", "d", "e"]


def word_tokenizer(words=WORDS, context=8):
    """A word-level tokenizer over ``words`` that adds <bos> by itself (as a known-circuit model's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<bos>", "<unk>", "<pad>", *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    core.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<bos>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=context)


def tiny_word_model(arch: str, folder: Path):
    """A random two-layer model over five words with a context of 8: GPT-2 (learned positions,
    so a longer text would not even run) or Llama with grouped-query attention. The tokenizer
    is saved to ``folder`` and read back, as a model folder's is."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    word_tokenizer().save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0, pad_token_id=2)
    torch.manual_seed(0)
    if arch == "gpt2":
        hf_model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=8, **ids))
    else:
        hf_model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, num_key_value_heads=2,
                                                max_position_embeddings=8, tie_word_embeddings=False, **ids))
    hf_model.config._attn_implementation = "eager"
    return boot_bridge(hf_model.eval(), tokenizer, f"words-{arch}")


@pytest.fixture(scope="module")
def planted():
    return load_model(str(PLANTED), device="cpu")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def word_model(request, tmp_path_factory):
    return tiny_word_model(request.param, tmp_path_factory.mktemp(f"words-{request.param}"))


def test_the_vocabulary_draw_is_spread_fixed_and_ordinary():
    tokenizer = word_tokenizer()
    assert english_ids(tokenizer) is None  # every word of the sentence is <unk>
    drawn = vocabulary_ids(tokenizer, 7)
    assert drawn == [3, 4, 5, 6, 7, 3, 4] == vocabulary_ids(tokenizer, 7)  # five words, cycled; no specials
    many = vocabulary_ids(word_tokenizer([f"w{i}" for i in range(40)]), 4)
    assert many == [3, 13, 23, 33]  # spread over the vocabulary in id order
    assert self_check_ids(tokenizer, "<bos>", n_ctx=8) == [0, 3, 4, 5, 6, 7, 3, 4]
    assert len(self_check_ids(tokenizer, None)) == DRAWN_LENGTH


def test_the_planted_model_passes_on_words_of_its_own_vocabulary(planted):
    checks = self_checks(planted)
    assert checks.all_passed and all(c.passed for c in checks.checks), checks
    assert checks.check("hooks").measured > 1.0 and checks.check("hugging_face").measured < 1e-5
    assert checks.text == "<bos> apple bird cloud door earth fish grass" != TEXT
    assert "words of the model's own vocabulary" in checks.notes()[0]
    tokens = text_tokens(planted)
    assert len(tokens) == planted.cfg.n_ctx == 8
    assert list(state_of(planted).capabilities[REFERENCE_KEY].tokens) == tokens  # the loader ran the same text
    require_trusted(planted, "patch", "hooks", "gradients", "clean_patch")  # a causal probe may run


def test_a_tiny_word_model_passes_and_its_causal_probes_run(word_model):
    checks = self_checks(word_model)
    assert checks.all_passed and all(c.passed for c in checks.checks), checks
    tokens = text_tokens(word_model)
    assert len(tokens) <= word_model.cfg.n_ctx and 1 not in tokens  # fits, and no <unk>
    assert list(state_of(word_model).capabilities[REFERENCE_KEY].tokens) == tokens
    prompts = PromptSet(["a b c d a", "b c d e b"], [(" b", " c"), (" c", " d")], name="words")
    assert ablate(word_model, prompts, "L1H0", ablation="zero").after.shape == (2,)  # refused before the fix
    assert logit_diff(word_model, prompts).per_prompt.shape == (2,)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_models_that_read_the_english_sentence_run_it_as_before(arch, request):
    """The tiny models' (and SmolLM2's, Gemma's, GPT-2's) tokenizers read it: same text, same ids as
    the old tokenization (`PromptSet([TEXT]).tokenize`), so the reports' self-check numbers stand."""
    model = request.getfixturevalue(f"tiny_{arch}")
    old = PromptSet([TEXT], name="self-check").tokenize(model)
    assert text_tokens(model) == old.tokens[0, :old.lengths[0]].tolist()
    assert self_checks(model).text == TEXT


def test_an_english_model_with_a_short_context_gets_the_sentence_cut_to_fit():
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model("llama")
    hf_model.config.max_position_embeddings = 6
    model = boot_bridge(hf_model, tokenizer, "tiny-llama-short")
    assert model.cfg.n_ctx == 6
    tokens = text_tokens(model)
    assert tokens == self_check_ids(tokenizer, state_of(model).info.prepended)[:6] and len(tokens) == 6
    checks = self_checks(model)
    assert checks.all_passed, checks


def test_broken_hooks_still_fail_on_a_small_vocabulary(monkeypatch):
    """The check still catches what it is for: inert hooks, on the planted model."""
    model = load_model(str(PLANTED), device="cpu")
    make_hooks_inert(monkeypatch)
    checks = self_checks(model)
    assert "hooks" in checks.failed and checks.check("hooks").measured == 0
    with pytest.raises(SelfCheckFailed, match="self-check 'hooks' failed on"):
        require_self_check(model, "hooks", "patch")
