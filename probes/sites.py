"""Sites: the places in a model that a probe reads or replaces, written as researchers write them.

=====================================  =========================================
``L9H6``                               head 6 of layer 9 (its output, ``hook_z``)
``L9H6 q``, ``L4KV1 v``                a head's query; a key/value head's value
``L25N1527``                           neuron 1527 of layer 25's MLP (``hook_post``)
``MLP5``, ``mlp_out L5``               layer 5's MLP output
``resid_pre L5 pos 10 ' John'``        the residual stream entering layer 5, at token 10
=====================================  =========================================

`parse_site` is the one parser: a label (or a `Site`) becomes a `Site`, ``(layer, unit,
index, pos)`` plus the activation it names. A site's hook point and the slice it covers come
from the sweep table `SWEEPS` (`Site.sweep`), the same table activation patching runs, so
ablation, circuits, path patching and patching agree on what ``"L9H6"`` means. `Site.check`
tests it against a model, so a site that does not exist is a clear error naming the valid
range, not an IndexError deep inside a forward pass.
"""

import functools
import re
from dataclasses import dataclass

import numpy as np

UNITS = {"head": "H", "kv": "KV", "neuron": "N"}  # unit -> its letter in labels
_LETTERS = {letter: unit for unit, letter in UNITS.items()}
_LABEL = re.compile(r"""^\s*(?:
      (?P<word>[a-z][a-z_]*)\s+L(?P<layer_of_word>\d+)            # resid_pre L5, mlp_out L5
    | L(?P<layer>\d+)(?:(?P<letter>KV|H|N)(?P<index>\d+))?          # L5, L9H6, L4KV1, L25N1527
      (?:\s+(?P<activation>(?!pos\b)[a-z][a-z_]*))?                 # L9H6 q, L1N7 pre
    | MLP\s*(?P<mlp>\d+)                                            # MLP5
    )(?:\s+pos\s+(?P<pos>\d+)(?:\s.*)?)?\s*$""", re.VERBOSE)  # pos 10, then the token, ignored
FORMS = "'L9H6' (a head), 'L25N1527' (a neuron), 'MLP5' or 'mlp_out L5' (a layer's MLP), 'attn_out L5'"


@dataclass(frozen=True, order=True)
class Site:
    """One site: ``layer``; ``unit`` ``"head"``, ``"kv"`` (a key/value head), ``"neuron"`` or
    None (a whole layer); the unit's ``index``; a token ``pos`` (None: every position); and the
    ``activation`` read there: a head's ``"q"``, ``"k"``, ``"v"`` or ``"pattern"`` (None: its
    output), a layer's ``"resid_pre"``, ``"attn_out"``, ``"mlp_out"``, …"""

    layer: int
    unit: str | None = None
    index: int | None = None
    pos: int | None = None
    activation: str | None = None

    @property
    def label(self) -> str:
        """``L9H6``, ``L9H6 q pos 3``, ``L25N1527``, ``mlp_out L5``: `parse_site` reads it back."""
        if self.unit:
            text = f"L{self.layer}{UNITS[self.unit]}{self.index}" + (f" {self.activation}" if self.activation else "")
        else:
            text = f"{self.activation} L{self.layer}" if self.activation else f"L{self.layer}"
        return text + ("" if self.pos is None else f" pos {self.pos}")

    def __str__(self) -> str:
        return self.label

    @property
    def sweep(self) -> "Sweep":
        """The sweep whose hook holds this site (``L9H6`` → ``head_out``, ``L9H6 pos 3`` →
        ``head_out_by_pos``, ``mlp_out L5`` → ``mlp_out_all_pos``)."""
        kinds = [s for s in SWEEPS.values() if s.unit_kind == self.unit and s.activation == (self.activation or "")]
        if not kinds:
            raise ValueError(f"site {self.label!r} names no activation a probe can reach: write {FORMS}")
        at_pos = [s for s in kinds if ("pos" in s.axes) == (self.pos is not None)]
        return (at_pos or kinds)[0]

    @property
    def hook(self) -> str:
        """The hook point: ``blocks.9.attn.hook_z`` for ``L9H6``."""
        return self.sweep.hook_at(self.layer)

    def selector(self, rows=slice(None)) -> tuple:
        """The site's slice of its hook's activation, in batch rows ``rows``:
        ``activation[site.selector()]`` is ``activation[:, :, 6]`` for ``L9H6``."""
        sweep = self.sweep
        return sweep.index(rows, {sweep.unit: self.index, "pos": self.pos} if sweep.unit else {"pos": self.pos})

    def check(self, model, model_name: str = "the model") -> "Site":
        """This site, if ``model`` has it; otherwise a ValueError naming the valid range."""
        kind = {"kv": "key/value head"}.get(self.unit, self.unit or "site")
        n_layers = model.cfg.n_layers
        if not 0 <= self.layer < n_layers:
            raise ValueError(f"{kind} {self.label} does not exist: {model_name} has layers 0–{n_layers - 1} "
                             f"({n_layers} layers); choose L0–L{n_layers - 1}")
        if self.unit:
            per_layer = units_per_layer(model, self.unit)
            letter = UNITS[self.unit]
            if not 0 <= self.index < per_layer:
                raise ValueError(f"{kind} {self.label} does not exist: {model_name} has {kind}s 0–{per_layer - 1} "
                                 f"per layer; choose {letter}0–{letter}{per_layer - 1}")
        return self


def units_per_layer(model, unit: str) -> int:
    """Heads, key/value heads or neurons in each layer of ``model``."""
    cfg = model.cfg
    return {"head": cfg.n_heads, "kv": getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
            "neuron": cfg.d_mlp}[unit]


def parse_site(site) -> Site:
    """A `Site` from a label (``"L9H6"``, ``"L9H6 q pos 3 ' and'"``, ``"MLP5"``, ``"resid_pre L5
    pos 10"``: the token after the position is ignored) or a `Site`. Not checked against a
    model: `Site.check` does that."""
    if isinstance(site, Site):
        return site
    match = _LABEL.match(site) if isinstance(site, str) else None
    if not match:
        raise ValueError(f"site {site!r}: write {FORMS}, with ' pos 10' for one position")
    pos = None if match["pos"] is None else int(match["pos"])
    if match["word"]:
        return Site(int(match["layer_of_word"]), pos=pos, activation=match["word"])
    if match["mlp"]:
        return Site(int(match["mlp"]), pos=pos, activation="mlp_out")
    unit = _LETTERS.get(match["letter"])
    return Site(int(match["layer"]), unit, None if unit is None else int(match["index"]), pos, match["activation"])


def unit_site(value, unit: str) -> Site:
    """A ``unit`` site (``"head"``, ``"neuron"``) given as a label or a ``(layer, index)`` pair,
    as a `Site`; not checked against a model."""
    letter = UNITS[unit]
    if not isinstance(value, str):
        layer, index = (int(x) for x in value)
        return Site(layer, unit, index)
    try:
        site = parse_site(value)
    except ValueError:
        site = None
    if site is None or site.unit != unit or site.pos is not None or site.activation:
        raise ValueError(f"{unit} {value!r}: write {unit}s as 'L<layer>{letter}<{unit}>', e.g. 'L9{letter}6'")
    return site


def _parse_unit(model, value, unit: str, model_name: str) -> tuple[int, int]:
    """`unit_site`, checked against ``model`` → ``(layer, index)``."""
    site = unit_site(value, unit).check(model, model_name)
    return site.layer, site.index


def parse_head(model, head, model_name: str = "the model") -> tuple[int, int]:
    """``"L9H6"`` or ``(9, 6)`` → ``(9, 6)``, checked against the model's layers and heads."""
    return _parse_unit(model, head, "head", model_name)


def parse_neuron(model, neuron, model_name: str = "the model") -> tuple[int, int]:
    """``"L31N892"`` or ``(31, 892)`` → ``(31, 892)``, checked against the model's layers and MLP width."""
    return _parse_unit(model, neuron, "neuron", model_name)


def parse_mlp(mlp) -> int:
    """An MLP layer: ``5``, ``"5"``, ``"MLP5"``, ``"mlp_out L5"`` or ``"L5"`` → 5 (not checked
    against a model)."""
    if isinstance(mlp, (int, np.integer)) and not isinstance(mlp, bool):
        return int(mlp)
    text = str(mlp).strip()
    if number := re.fullmatch(r"(?:MLP\s*)?(\d+)", text, re.IGNORECASE):
        return int(number[1])
    site = _plain(text)  # with no position
    if site is None or site.unit or site.activation not in (None, "mlp_out"):
        raise ValueError(f"MLP {mlp!r}: write MLP layers as 'MLP5' or as the layer number 5")
    return site.layer


def head_label(layer: int, head: int) -> str:
    return Site(layer, "head", head).label


def neuron_label(layer: int, index: int) -> str:
    return Site(layer, "neuron", index).label


def layer_label(layer: int) -> str:
    return Site(layer).label  # a layer as figures' axes name it: L5


def mlp_label(layer: int) -> str:
    """A whole MLP layer as circuits and edges name it: ``MLP5`` (`parse_mlp` reads it back)."""
    return f"MLP{layer}"


# --- the edge graph's nodes (`probes.edges.graph`): senders and receiving ends are sites --------
ARROW = "→"
EMBED = Site(0, activation="embed")  # the stream entering layer 0 (positions included): a sender
LOGITS = Site(0, activation="logits")  # the final residual stream the unembedding reads: an end
EDGE_FORMS = ("write edges as 'sender → receiving end', e.g. 'L5H5 → L9H6.q', 'MLP0 → L3KV0.v', "
              "'embed → MLP0', 'L9H6 → logits'; senders: 'embed', heads 'L5H5', MLPs 'MLP0'; receiving "
              "ends: a head's query 'L9H6.q', a key/value head's key or value 'L9KV1.k' / 'L9KV1.v', "
              "an MLP's input 'MLP3', 'logits'")


def node_label(site: Site) -> str:
    """An edge graph node's name: senders ``embed``, ``L5H5``, ``MLP0`` (its output); receiving ends
    ``L9H6.q``, ``L9KV1.k``, ``MLP3`` (its input: activation ``mlp_in``), ``logits``."""
    if site in (EMBED, LOGITS):
        return site.activation
    if site.unit is None:
        return mlp_label(site.layer)
    unit = Site(site.layer, site.unit, site.index).label
    return unit if site.activation is None else f"{unit}.{site.activation}"


def edge_label(sender: Site, end: Site) -> str:
    return f"{node_label(sender)} {ARROW} {node_label(end)}"


def edge_parts(label: str) -> tuple[str, str]:
    """The sender's and end's labels of a label `edge_label` wrote (unchecked: `parse_edge` checks)."""
    sender, _, end = label.partition(f" {ARROW} ")
    return sender, end


def is_kv_label(label: str) -> bool:
    """Whether an edge label, as `edge_label` writes it, ends at a key/value head's key or value."""
    return bool(re.fullmatch(rf".+ {ARROW} L\d+KV\d+\.[kv]", label))


def _plain(text: str) -> Site | None:
    """The site a label names, if it parses and names no position."""
    try:
        site = parse_site(text)
    except ValueError:
        return None
    return site if site.pos is None else None


def parse_sender(text: str) -> Site:
    """``"embed"`` → `EMBED`, ``"L5H5"`` → the head, ``"MLP0"`` → the MLP's output."""
    text = text.strip()
    site = EMBED if text == "embed" else _plain(text)
    if site == EMBED or site is not None and (site.unit == "head" and not site.activation
                                              or site.unit is None and site.activation == "mlp_out"):
        return site
    raise ValueError(f"sender {text!r}: a sender is 'embed', a head 'L5H5' or an MLP 'MLP0'")


def parse_end(text: str) -> Site:
    """``"L9H6.q"``, ``"L9KV1.k"``, ``"MLP3"`` (its input), ``"logits"`` as sites; a query head's
    ``.k``/``.v`` stays a head site, for the edge graph to resolve (`probes.edges.graph.kv_end`)."""
    text = text.strip()
    if text == "logits":
        return LOGITS
    node, dot, kind = text.rpartition(".")
    site = _plain(node) if dot else None
    if site is not None and not site.activation and kind in ("q", "k", "v") \
            and (site.unit == "head" or site.unit == "kv" and kind != "q"):
        return Site(site.layer, site.unit, site.index, activation=kind)
    site = _plain(text)
    if site is not None and site.unit is None and site.activation == "mlp_out":
        return Site(site.layer, activation="mlp_in")
    raise ValueError(f"receiving end {text!r}: a receiving end is a head's query 'L9H6.q', a key/value "
                     "head's key or value 'L9KV1.k' / 'L9KV1.v', an MLP's input 'MLP3' or 'logits'")


def canonical_edge(label) -> str:
    """An edge (a label or a ``(sender, end)`` pair) as `edge_label` writes it; a label is parsed
    once per process, however many circuits name it."""
    return _canonical_label(label) if isinstance(label, str) else edge_label(*parse_edge(label))


@functools.lru_cache(maxsize=2 ** 18)
def _canonical_label(label: str) -> str:
    return edge_label(*parse_edge(label))


def parse_edge(label) -> tuple[Site, Site]:
    """``"L5H5 → L9H6.q"`` (or ``->``, or a ``(sender, end)`` pair of labels) → its two sites."""
    if isinstance(label, tuple) and len(label) == 2 and all(isinstance(p, str) for p in label):
        parts = list(label)
    elif isinstance(label, str):
        parts = label.replace("->", ARROW).split(ARROW)
    else:
        raise ValueError(f"edge {label!r}: {EDGE_FORMS}")
    if len(parts) != 2:
        raise ValueError(f"edge {label!r}: {EDGE_FORMS}")
    try:
        return parse_sender(parts[0]), parse_end(parts[1])
    except ValueError as error:
        raise ValueError(f"edge {label!r}: {error}; {EDGE_FORMS}") from None


def head_order(label: str) -> tuple[int, int]:
    """``"L9H6"`` → ``(9, 6)``: sorts head labels by layer, then head."""
    site = parse_site(label)
    return site.layer, site.index


@dataclass(frozen=True)
class Sweep:
    """A kind of site, and how to find one in its hook's activation.

    ``hook``: the hook point, per layer. ``dims``: the activation's dimensions after the
    batch (for a pattern, ``pos`` is the query position). ``axes``: the indices that name a
    site, in this order: ``layer``, then a unit (``head`` or ``neuron``), then ``pos``; a
    dimension the site does not name is patched whole (a head at every position).
    ``kv``: the heads are key/value heads (grouped-query attention). Everything else --
    which slice a site patches, its label, parsing ``sites=`` -- follows from these, so a
    new sweep is one entry in `SWEEPS` (plus its reference in tests/patching_reference.py).
    """

    name: str
    hook: str
    dims: tuple[str, ...]
    axes: tuple[str, ...]
    kv: bool = False

    @property
    def unit(self) -> str | None:
        """``head``, ``neuron`` or None (a residual-stream or layer sweep): the axis naming the unit."""
        return next((a for a in self.axes if a in ("head", "neuron")), None)

    @property
    def unit_kind(self) -> str | None:
        """The `Site.unit` of this sweep's sites: ``kv`` for key/value heads."""
        return "kv" if self.kv else self.unit

    @property
    def letter(self) -> str:
        """The unit's letter in labels: ``H`` (``L9H6``), ``KV`` (``L4KV1``), ``N`` (``L31N892``)."""
        return UNITS.get(self.unit_kind, "")

    @property
    def activation(self) -> str:
        """The activation its labels name: ``q`` for ``head_q``, ``resid_pre``; ``""`` for a unit's output."""
        if not self.unit:
            return self.name.removesuffix("_all_pos")
        word = self.name.removesuffix("_by_pos").removeprefix(self.unit).removeprefix("_")
        return "" if word in ("", "out") else word

    def hook_at(self, layer: int) -> str:
        return self.hook.format(layer=layer)

    def index(self, rows, where: dict) -> tuple:
        """Index of a site's slice in rows ``rows`` of the activation: ``where`` maps the
        site's axes after ``layer`` to an index, or to an index tensor per row (None: all)."""
        picks = [slice(None) if where.get(dim) is None else where[dim] for dim in self.dims]
        while picks and isinstance(picks[-1], slice):
            picks.pop()
        return (rows, *picks)

    def label(self, site: tuple, tokens: tuple[str, ...]) -> str:
        """``resid_pre L5 pos 10 ' John'``, ``L9H6``, ``L9H6 q pos 3 ' and'``, ``L4KV1 v``, ``L25N1527``."""
        where = dict(zip(self.axes, site))
        text = Site(where["layer"], self.unit_kind, where.get(self.unit), where.get("pos"),
                    self.activation or None).label
        return text + (f" {tokens[where['pos']]!r}" if "pos" in where else "")

    def site(self, value) -> tuple[int, ...]:
        """A site as its indices in the order of ``axes``, from a label this sweep writes
        (``"L9H6"``, ``"L9H6 pos 10"``, ``"resid_pre L5 pos 10 ' John'"``) or a tuple of ints."""
        example = " ".join(filter(None, [f"L9{self.letter}6" if self.unit else "L9",
                                         "pos 10" if "pos" in self.axes else ""]))
        how = f"write {self.name} sites as {example!r} or as ({', '.join(self.axes)}) tuples"
        if isinstance(value, str):
            try:
                parsed = parse_site(value)
            except ValueError:
                parsed = None
            fits = parsed is not None and parsed.unit == self.unit_kind and (
                (parsed.pos is not None) == ("pos" in self.axes)) and parsed.activation in (None, self.activation)
            if not fits:
                raise ValueError(f"site {value!r} is not a {self.name} site: {how}")
            found = {"layer": parsed.layer, "pos": parsed.pos, self.unit: parsed.index}
            return tuple(found[axis] for axis in self.axes)
        values = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
        if len(values) != len(self.axes) or not all(isinstance(v, (int, np.integer)) for v in values):
            raise ValueError(f"site {value!r} is not a {self.name} site: {how}")
        return tuple(int(v) for v in values)


RESID, Z, PATTERN, POST = ("pos", "d_model"), ("pos", "head", "d_head"), ("head", "pos", "key"), ("pos", "neuron")
SWEEPS = {s.name: s for s in [
    Sweep("resid_pre", "blocks.{layer}.hook_resid_pre", RESID, ("layer", "pos")),
    Sweep("resid_mid", "blocks.{layer}.hook_resid_mid", RESID, ("layer", "pos")),
    Sweep("resid_post", "blocks.{layer}.hook_resid_post", RESID, ("layer", "pos")),
    Sweep("attn_out", "blocks.{layer}.hook_attn_out", RESID, ("layer", "pos")),
    Sweep("mlp_out", "blocks.{layer}.hook_mlp_out", RESID, ("layer", "pos")),
    Sweep("head_out", "blocks.{layer}.attn.hook_z", Z, ("layer", "head")),
    Sweep("head_out_by_pos", "blocks.{layer}.attn.hook_z", Z, ("layer", "head", "pos")),
    Sweep("head_q", "blocks.{layer}.attn.hook_q", Z, ("layer", "head")),
    Sweep("head_q_by_pos", "blocks.{layer}.attn.hook_q", Z, ("layer", "head", "pos")),
    Sweep("head_k", "blocks.{layer}.attn.hook_k", Z, ("layer", "head"), kv=True),
    Sweep("head_k_by_pos", "blocks.{layer}.attn.hook_k", Z, ("layer", "head", "pos"), kv=True),
    Sweep("head_v", "blocks.{layer}.attn.hook_v", Z, ("layer", "head"), kv=True),
    Sweep("head_v_by_pos", "blocks.{layer}.attn.hook_v", Z, ("layer", "head", "pos"), kv=True),
    Sweep("head_pattern", "blocks.{layer}.attn.hook_pattern", PATTERN, ("layer", "head")),
    Sweep("head_pattern_by_pos", "blocks.{layer}.attn.hook_pattern", PATTERN, ("layer", "head", "pos")),
    Sweep("mlp_out_all_pos", "blocks.{layer}.hook_mlp_out", RESID, ("layer",)),  # a whole MLP layer
    Sweep("neuron", "blocks.{layer}.mlp.hook_post", POST, ("layer", "neuron")),  # all positions
    Sweep("neuron_by_pos", "blocks.{layer}.mlp.hook_post", POST, ("layer", "neuron", "pos")),
]}


def hook_of(sweep: str, layer: int) -> str:
    """``hook_of("head_out", 9)`` → ``"blocks.9.attn.hook_z"``."""
    return SWEEPS[sweep].hook_at(layer)
