"""Site labels: one parser, and every site yields its hook and slice from the sweep table."""

import pytest
import torch

from circuitcheck.probes.sites import SWEEPS, Site, hook_of, parse_head, parse_mlp, parse_site


@pytest.mark.parametrize("label, site, sweep", [
    ("L9H6", Site(9, "head", 6), "head_out"),
    ("L9H6 pos 3", Site(9, "head", 6, 3), "head_out_by_pos"),
    ("L9H6 q pos 3 ' and'", Site(9, "head", 6, 3, "q"), "head_q_by_pos"),
    ("L4KV1 v", Site(4, "kv", 1, None, "v"), "head_v"),
    ("L0H1 pattern pos 11", Site(0, "head", 1, 11, "pattern"), "head_pattern_by_pos"),
    ("L25N1527", Site(25, "neuron", 1527), "neuron"),
    ("L1N7 pos 14", Site(1, "neuron", 7, 14), "neuron_by_pos"),
    ("MLP5", Site(5, activation="mlp_out"), "mlp_out_all_pos"),
    ("mlp_out L5", Site(5, activation="mlp_out"), "mlp_out_all_pos"),
    ("resid_pre L5 pos 10 ' John'", Site(5, pos=10, activation="resid_pre"), "resid_pre"),
])
def test_a_label_is_parsed_once_into_layer_unit_index_and_position(label, site, sweep):
    parsed = parse_site(label)
    assert parsed == site and parse_site(parsed.label) == parsed  # labels read back
    assert parsed.sweep.name == sweep and parsed.hook == hook_of(sweep, site.layer)


def test_a_sites_slice_is_the_slice_patching_uses():
    """``activation[site.selector()]`` is what the sweep table's `Sweep.index` selects."""
    z = torch.arange(2 * 5 * 4 * 3).reshape(2, 5, 4, 3)  # batch pos head d_head
    assert torch.equal(z[parse_site("L1H2").selector()], z[:, :, 2])
    assert torch.equal(z[parse_site("L1H2 pos 4").selector()], z[:, 4, 2])
    pattern = torch.arange(2 * 4 * 5 * 5).reshape(2, 4, 5, 5)  # batch head query key
    assert torch.equal(pattern[parse_site("L0H3 pattern pos 2").selector()], pattern[:, 3, 2])
    resid = torch.arange(2 * 5 * 6).reshape(2, 5, 6)
    assert torch.equal(resid[parse_site("attn_out L0").selector()], resid)
    assert torch.equal(resid[parse_site("resid_pre L0 pos 1").selector(slice(0, 1))], resid[:1, 1])


def test_every_sweep_label_parses_back_to_its_sweep():
    for sweep in SWEEPS.values():
        site = tuple(1 for _ in sweep.axes)
        parsed = parse_site(sweep.label(site, ("<bos>", " x")))
        assert sweep.site(sweep.label(site, ("<bos>", " x"))) == site
        assert parsed.hook == sweep.hook_at(1)


def test_sites_a_model_lacks_name_the_valid_range(tiny_llama):
    with pytest.raises(ValueError, match="head L1H9 does not exist: the model has heads 0–3 per layer"):
        parse_head(tiny_llama, "L1H9")
    with pytest.raises(ValueError, match="site mlp_out L7 does not exist: the model has layers 0–1"):
        parse_site("MLP7").check(tiny_llama)
    with pytest.raises(ValueError, match="head 'L9N6': write heads as 'L<layer>H<head>'"):
        parse_head(tiny_llama, "L9N6")
    with pytest.raises(ValueError, match="site 'head 3': write 'L9H6' \\(a head\\)"):
        parse_site("head 3")
    with pytest.raises(ValueError, match="names no activation"):
        parse_site("L4KV1").sweep  # a key/value head's key or value, not its output
    assert [parse_mlp(m) for m in (5, "5", "MLP5", "mlp5", "mlp_out L5", "L5")] == [5] * 6
