"""Loading tiny models through the same path as real ones: bridge, compatibility mode, frozen."""

import pytest
import torch

from circuitcheck.fixtures import load_model
from circuitcheck.probes.model_state import model_info


def test_tiny_models_load_frozen_in_eval_and_compatibility_mode(tiny_llama, tiny_gpt2):
    for model, arch in ((tiny_llama, "llama"), (tiny_gpt2, "gpt2")):
        info = model_info(model)
        assert info.name == f"tiny-{arch}" and info.source == "tiny"
        assert (info.n_layers, info.n_heads, info.d_model) == (2, 4, 64)
        assert model.compatibility_mode and not model.training
        assert not any(p.requires_grad for p in model.parameters())
        # compatibility mode gives the legacy hook names the TransformerLens helpers use
        assert "blocks.1.hook_resid_post" in model.hook_dict


def test_same_seed_same_weights():
    a, b = load_model("tiny-llama", "cpu"), load_model("tiny-llama", "cpu")
    tokens = a.to_tokens("When John and Mary went to the shops")
    with torch.inference_mode():
        assert torch.equal(a(tokens), b(tokens))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_is_applied(dtype):
    model = load_model("tiny-gpt2", "cpu", dtype)
    assert next(model.parameters()).dtype == getattr(torch, dtype)
    assert model_info(model).dtype == dtype


def test_bad_dtype_is_named():
    with pytest.raises(ValueError, match="dtype 'float8': choose one of float32, bfloat16, float16"):
        load_model("tiny-llama", "cpu", "float8")


def test_hypothesis_prints_the_model_in_one_line_and_its_class_is_untouched(tiny_llama):
    from hypothesis.vendor.pretty import pretty
    from transformer_lens.model_bridge import TransformerBridge

    assert pretty(tiny_llama) == "TransformerBridge(tiny-llama on cpu, float32)"
    assert type(tiny_llama) is TransformerBridge and "HookPoint" in repr(tiny_llama)
    assert model_info(tiny_llama).name == "tiny-llama"


@pytest.mark.slow
def test_prepend_bos_option_reaches_the_model_and_is_checked(pytester):
    from circuitcheck.fixtures.loading import PREPEND_BOS_MODES
    from circuitcheck.probes.tokens import PREPEND_BOS_MODES as PROBE_MODES

    assert PREPEND_BOS_MODES == PROBE_MODES
    pytester.makepyfile(test_bos='''
from circuitcheck.probes import PromptSet, top_k
from circuitcheck.probes.model_state import model_info

def test_prepended(model, request):
    expected = {"auto": "<|endoftext|>", "yes": "<|endoftext|>", "no": None}
    assert model_info(model).prepended == expected[request.config.getoption("--prepend-bos")]
    assert top_k(model, PromptSet(["When John and Mary"])).bos == model_info(model).prepended
''')
    for mode in ("auto", "yes", "no"):
        result = pytester.runpytest_subprocess("--model", "tiny-gpt2", "--prepend-bos", mode, "--no-report", "-q")
        result.assert_outcomes(passed=1)
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "--prepend-bos" in help_text and "nothing for SmolLM2" in help_text
    pytester.runpytest_subprocess("--prepend-bos", "maybe").stderr.fnmatch_lines(["*invalid choice: 'maybe'*"])


def test_loading_prints_no_progress_bars(capfd):
    load_model("tiny-gpt2", "cpu")
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "it/s]" not in out + err


def test_a_config_without_architectures_is_named_from_its_model_class():
    """A config read from a GGUF file lists no architectures, and the bridge picks its adapter
    from that list: loading fills it in from the model's class."""
    from circuitcheck.fixtures.loading import boot_bridge
    from circuitcheck.fixtures.tiny import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model("gemma3")
    hf_model.config.architectures = []
    bridge = boot_bridge(hf_model, tokenizer, "gemma3-from-gguf")
    assert hf_model.config.architectures == ["Gemma3ForCausalLM"]
    assert "blocks.1.ln1_post.hook_scale" in bridge.hook_dict


def test_an_architecture_without_a_transformer_lens_adapter_is_refused_in_one_line():
    from transformers import BioGptConfig, BioGptForCausalLM

    from circuitcheck.fixtures import ModelUnavailable
    from circuitcheck.fixtures.loading import boot_bridge
    from circuitcheck.fixtures.tiny import tiny_hf_model

    _, tokenizer = tiny_hf_model("llama")
    biogpt = BioGptForCausalLM(BioGptConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ModelUnavailable) as error:
        boot_bridge(biogpt, tokenizer, "some/biogpt")
    message = str(error.value)
    assert "\n" not in message
    for part in ("'some/biogpt'", "BioGptForCausalLM", "no TransformerLens adapter", "LlamaForCausalLM",
                 "Gemma3ForCausalLM"):
        assert part in message
