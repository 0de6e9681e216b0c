"""An open-vocabulary latent mapper: one network edits a W+ latent for any prompt in one pass.

StyleCLIP's mapper (Patashnik et al., ICCV 2021) is trained per prompt: three MLPs (coarse, medium,
fine W+ groups) map a latent to its edit offset. Here, as in DeltaEdit (Lyu et al., CVPR 2023) and
FFCLIP (Zhu et al., NeurIPS 2022), the text is an *input*, so one trained network serves every
prompt. For each group, one MLP maps each W+ vector of the group (its offset from ``w_avg`` divided
by ``w_scale``, the spread of the generator's w, beside a learned embedding of the vector's index) to
that vector's offset; the last layer is zero-initialised, so the untrained mapper is the identity
edit. ``ws_edit = ws + strength * offset``: ``strength`` 0 is no edit and 1 the trained edit.

How the condition enters: the prompt's HD-VILA text embedding ``t`` [D] and the source image's
HD-VILA embedding ``s`` [D] (what the image is now: the same prompt means different moves for
different images) are each standardised by the statistics of the training prompts and images
(:meth:`EditMapper.set_condition_statistics`; buffers saved with the weights) and scaled to unit
root-mean-square (PixelNorm, as DeltaEdit's condition branch does); an MLP of their concatenation (the
condition vector) joins each W+ vector's input and modulates every hidden layer of every group MLP
(FiLM, Perez et al., AAAI 2018: ``h * (1 + gamma) + beta``, both zero-initialised). The condition is
then as loud as ``w`` from the first step. (The first bundled mapper concatenated the raw unit-norm
embeddings, entries of about 0.06, beside standardised ``w``: about 0.4% of the input variance, and
it learned a nearly prompt-blind offset.)

On top, optionally, the **value-direction prior** (:meth:`EditMapper.value_prior`): class-mean
latents of generator samples labelled by the guide's own zero-shot reading; the network then learns
a residual to it.

And optionally the **layer gate** (:meth:`EditMapper.layer_gate`): each attribute of the vocabulary may
name the W+ groups its edits may move (:attr:`~generation.editing.attributes.Attribute.layers`, e.g.
medium and fine for a colour); the prompt is routed to the attribute it is about by its text-to-text
match with the training prompts, and the offset is kept to that attribute's groups (StyleCLIP trains
its colour mappers without the coarse part for the same reason: the coarse layers set pose and outline).

The mapper records the generator (:mod:`generation.stylegan2.fingerprint`) and the HD-VILA model
(weights digest) it was trained with, and refuses others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from generation.editing.attributes import AttributesError, AttributeVocabulary
from generation.stylegan2.fingerprint import GeneratorBound
from generation.stylegan2.layers import normalize_2nd_moment  # StyleGAN's PixelNorm
from hdvila.errors import CheckpointError
from hdvila.modeling_utils import PretrainedModel


@dataclass
class MapperConfig:
    model_type: str = "hdvila_edit_mapper"
    w_dim: int = 256
    num_ws: int = 10
    resolution: int = 64
    embed_dim: int = 256               # HD-VILA projection_dim
    hidden: int = 512
    layers: int = 3                    # linear layers per group MLP
    groups: dict = field(default_factory=dict)   # name -> W+ indices (generation.editing.encoder.ws_groups)
    w_scale: float = 1.0               # rms distance of the generator's w from w_avg (inputs are divided by it)
    generator_digest: str = ""
    guide_digest: str = ""             # digest of the HD-VILA weights that guided training
    vocabulary: list = field(default_factory=list)  # words of the training prompts (empty: no check)
    condition: str = "film"            # how text and source enter (the only kind; recorded in config.json)
    condition_hidden: int = 256        # width of the condition branch
    attributes: dict = field(default_factory=dict)  # the editing vocabulary trained on (AttributeVocabulary.to_dict)
    prior_values: int = 0              # values of the value-direction prior (0: no prior; see EditMapper.value_prior)
    prior_scale: float = 20.0          # logit scale of the prior's text routing and source reading (the guide's)
    attribute_layers: dict = field(default_factory=dict)  # editable attribute -> W+ indices its edits move
    layer_routes: int = 0              # training prompts the layer gate routes by (0: no gate)


def config_for(generator: nn.Module, hdvila: nn.Module, vocabulary: AttributeVocabulary | None = None,
               **kwargs) -> MapperConfig:
    """A :class:`MapperConfig` for ``generator`` and the HD-VILA model that guides it: sizes and both
    digests from the models. ``vocabulary`` (an :class:`AttributeVocabulary`, e.g. the demo's
    :func:`generation.presets.demo_vocabulary`) fills the ``vocabulary`` field with its words (what
    prompts are checked against) and ``attributes`` with its :meth:`~AttributeVocabulary.to_dict`;
    None leaves both empty (no check). Other fields from ``kwargs``."""
    from generation.editing.guide import guide_fingerprint
    from generation.stylegan2.fingerprint import generator_fingerprint

    fp = generator_fingerprint(generator)
    if vocabulary is not None:
        kwargs.update(vocabulary=vocabulary.words(), attributes=vocabulary.to_dict())
        kwargs.update(gate_config(vocabulary, fp["num_ws"], fp["img_resolution"]))
    return MapperConfig(w_dim=fp["w_dim"], num_ws=fp["num_ws"], resolution=fp["img_resolution"],
                        embed_dim=int(hdvila.config.projection_dim), generator_digest=fp["digest"],
                        guide_digest=guide_fingerprint(hdvila), **kwargs)


def gate_config(vocabulary: AttributeVocabulary, num_ws: int, resolution: int) -> dict:
    """The layer gate's config fields for ``vocabulary``: ``attribute_layers`` (editable attribute -> the
    W+ indices of its :attr:`~generation.editing.attributes.Attribute.layers`) and ``layer_routes`` (the
    number of :func:`route_prompts`); both empty (no gate) when every editable attribute may move every layer."""
    from generation.editing.encoder import ws_groups

    groups = ws_groups(num_ws, resolution)
    editable = [vocabulary[a] for a in vocabulary.editable]
    if all(set(a.layers) == set(groups) for a in editable):
        return {"attribute_layers": {}, "layer_routes": 0}
    layers = {a.name: sorted(i for g in a.layers for i in groups[g]) for a in editable}
    for a in editable:
        if not layers[a.name]:
            raise AttributesError(f"{vocabulary.source}: attribute {a.name!r} may move only the {'/'.join(a.layers)} "
                                  f"W+ group(s), which hold no vector of this {resolution} px generator ({num_ws} "
                                  f"vectors: {groups}). Name a group that has vectors in its \"layers\".")
    return {"attribute_layers": layers, "layer_routes": len(route_prompts(vocabulary)[0])}


def route_prompts(vocabulary: AttributeVocabulary) -> tuple[list[str], list[int]]:
    """What the layer gate routes a prompt by: every training prompt of the editable attributes (sorted,
    unique) and the index of its attribute among the editable attributes' names *sorted* (the order of
    the gate's rows, whatever order a config file keeps its keys in)."""
    rows, names = vocabulary.all_prompts("train"), sorted(vocabulary.editable)
    return [p for _, _, p in rows], [names.index(a) for a, _, _ in rows]


CONDITIONS = ("film",)


class _GroupMLP(nn.Module):
    """Per W+ vector: ``layers - 1`` hidden layers, each FiLM-modulated by the condition vector, and a
    zero-initialised output layer."""

    def __init__(self, cin: int, hidden: int, cout: int, layers: int, cond_dim: int):
        super().__init__()
        mods, c = [], cin
        for _ in range(layers - 1):  # Linear, LeakyReLU pairs
            mods += [nn.Linear(c, hidden), nn.LeakyReLU(0.2)]
            c = hidden
        self.body = nn.Sequential(*mods)
        self.film = nn.Linear(cond_dim, 2 * hidden * (layers - 1))  # gamma, beta per hidden layer
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.out = nn.Linear(c, cout)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [N, K, cin], cond [N, cond_dim] -> [N, K, cout]."""
        linears = self.body[::2]
        mods = self.film(cond)[:, None].chunk(2 * len(linears), dim=-1)  # each [N, 1, hidden]
        for i, layer in enumerate(linears):
            x = nn.functional.leaky_relu(layer(x) * (1 + mods[2 * i]) + mods[2 * i + 1], 0.2)
        return self.out(x)


class EditMapper(GeneratorBound, PretrainedModel):
    """(ws [N, num_ws, w_dim], text [N, D], source image embedding [N, D]) -> W+ offset [N, num_ws, w_dim].

    :meth:`check_generator` refuses a generator other than the one it was trained with."""

    config_class = MapperConfig
    generator_user = "this edit mapper"
    generator_remedy = ("Use the generator it was trained with, or train a mapper for yours with "
                        "generation/train_mapper.py --generator.")

    def __init__(self, config: MapperConfig):
        super().__init__()
        self.config = config
        if not config.groups:
            from generation.editing.encoder import ws_groups

            config.groups = ws_groups(config.num_ws, config.resolution)
        covered = sorted(i for idx in config.groups.values() for i in idx)
        if covered != list(range(config.num_ws)):
            raise ValueError(f"MapperConfig.groups must cover W+ indices 0..{config.num_ws - 1} once, "
                             f"got {config.groups}")
        if config.condition not in CONDITIONS:
            raise ValueError(f"MapperConfig.condition must be one of {CONDITIONS}, got {config.condition!r}")
        self.index_embed = nn.Embedding(config.num_ws, 16)
        # standardised, PixelNorm'd text and source -> the vector that modulates every hidden layer
        for name, value in (("text_mean", 0.0), ("text_std", 1.0), ("source_mean", 0.0), ("source_std", 1.0)):
            self.register_buffer(name, torch.full((config.embed_dim,), value))
        h = config.condition_hidden
        self.condition = nn.Sequential(nn.Linear(2 * config.embed_dim, h), nn.LeakyReLU(0.2),
                                       nn.Linear(h, h), nn.LeakyReLU(0.2))
        if config.prior_values:  # the value-direction prior (EditMapper.set_value_prior)
            v = config.prior_values
            self.register_buffer("prior_text", torch.zeros(v, config.embed_dim))
            self.register_buffer("prior_means", torch.zeros(v, config.num_ws, config.w_dim))
            self.register_buffer("prior_attribute", torch.zeros(v, dtype=torch.long))
        if config.layer_routes:  # the layer gate (EditMapper.set_layer_routes)
            if not config.attribute_layers or any(not idx or min(idx) < 0 or max(idx) >= config.num_ws
                                                  for idx in config.attribute_layers.values()):
                raise ValueError(f"MapperConfig.attribute_layers must give each gated attribute W+ indices in "
                                 f"0..{config.num_ws - 1}, got {config.attribute_layers}")
            self.register_buffer("route_text", torch.zeros(config.layer_routes, config.embed_dim))
            self.register_buffer("route_attribute", torch.zeros(config.layer_routes, dtype=torch.long))
            mask = torch.zeros(len(config.attribute_layers), config.num_ws)
            for a, name in enumerate(sorted(config.attribute_layers)):  # rows in sorted name order (route_prompts)
                mask[a, config.attribute_layers[name]] = 1.0
            self.register_buffer("layer_mask", mask, persistent=False)  # [A, num_ws], from the config
        # the condition vector also joins each W+ vector's input, so the hidden activations depend on the
        # prompt from the first step (FiLM alone, zero-initialised, starts prompt-blind)
        cin = config.w_dim + 16 + h
        self.mlps = nn.ModuleDict({name: _GroupMLP(cin, config.hidden, config.w_dim, config.layers, h)
                                   for name, idx in config.groups.items() if idx})

    @torch.no_grad()
    def set_condition_statistics(self, text_embeds: torch.Tensor, source_embeds: torch.Tensor,
                                 floor: float = 0.1) -> None:
        """Standardise the condition by these embeddings: text_embeds [P, D] (the training prompts),
        source_embeds [N, D] (the training images). Each dimension's std is floored at ``floor`` x the
        mean std, so a prompt unlike the training ones is not blown up."""
        for prefix, x in (("text", text_embeds), ("source", source_embeds)):
            x = x.float().to(self.text_mean.device)
            if x.ndim != 2 or x.shape[1] != self.config.embed_dim or x.shape[0] < 2:
                raise ValueError(f"{prefix} embeddings must be [>= 2, {self.config.embed_dim}], got {tuple(x.shape)}")
            std = x.std(dim=0)
            getattr(self, f"{prefix}_mean").copy_(x.mean(dim=0))
            getattr(self, f"{prefix}_std").copy_(std.clamp_min(floor * float(std.mean())))

    @torch.no_grad()
    def set_value_prior(self, value_text: torch.Tensor, attribute: torch.Tensor, means: torch.Tensor) -> None:
        """The value-direction prior: value_text [V, D] the guide's embeddings of the value prompts of
        every attribute ("a red one", "a large one", ...), attribute [V] long (which attribute each
        value belongs to), means [V, num_ws, w_dim] the mean W+ latent of generator samples the guide
        reads as that value (:func:`value_means`)."""
        c = self.config
        v = c.prior_values
        if not v:
            raise ValueError("this mapper has no value prior (MapperConfig.prior_values is 0)")
        if value_text.shape != (v, c.embed_dim) or attribute.shape != (v,) or means.shape != (v, c.num_ws, c.w_dim):
            raise ValueError(f"value prior shapes must be [{v}, {c.embed_dim}], [{v}], [{v}, {c.num_ws}, {c.w_dim}]; "
                             f"got {tuple(value_text.shape)}, {tuple(attribute.shape)}, {tuple(means.shape)}")
        self.prior_text.copy_(value_text)
        self.prior_attribute.copy_(attribute)
        self.prior_means.copy_(means)

    @torch.no_grad()
    def set_layer_routes(self, route_text: torch.Tensor, attribute: torch.Tensor) -> None:
        """The layer gate's routing table: route_text [R, D] the guide's embeddings of
        :func:`route_prompts`' prompts, attribute [R] their attribute's index among the gated
        attributes' sorted names."""
        r = self.config.layer_routes
        if not r:
            raise ValueError("this mapper has no layer gate (MapperConfig.layer_routes is 0)")
        if route_text.shape != (r, self.config.embed_dim) or attribute.shape != (r,):
            raise ValueError(f"layer routes must be [{r}, {self.config.embed_dim}] and [{r}], "
                             f"got {tuple(route_text.shape)}, {tuple(attribute.shape)}")
        if int(attribute.min()) < 0 or int(attribute.max()) >= len(self.config.attribute_layers):
            raise ValueError(f"route attributes must index the {len(self.config.attribute_layers)} gated attributes")
        self.route_text.copy_(route_text)
        self.route_attribute.copy_(attribute)

    @torch.no_grad()
    def route_by(self, guide, vocabulary: AttributeVocabulary) -> None:
        """Set the layer gate's routing table from ``guide``'s text embeddings of :func:`route_prompts`
        of ``vocabulary`` (:meth:`set_layer_routes`); nothing for a mapper without a gate."""
        if not self.config.layer_routes:
            return
        prompts, attribute = route_prompts(vocabulary)
        text = torch.cat([guide.text_features(prompts[i:i + 256]).float().cpu() for i in range(0, len(prompts), 256)])
        self.set_layer_routes(text, torch.tensor(attribute, dtype=torch.long))

    def layer_gate(self, text: torch.Tensor) -> torch.Tensor:
        """[N, num_ws] in [0, 1]: how much each W+ vector may move for prompts ``text`` [N, D] (ones when
        the mapper has no gate). The prompt's mass on each attribute is a softmax of ``prior_scale`` x
        cos(prompt, training prompt) over the routing table, summed per attribute; the gate is that mass
        spread over each attribute's layers (a prompt about a colour moves only the medium and fine
        layers when the vocabulary says so)."""
        if not self.config.layer_routes:
            return torch.ones(text.shape[0], self.config.num_ws, dtype=text.dtype, device=text.device)
        if not bool(self.route_text.any()):  # never set: every prompt would land on one attribute's layers
            raise CheckpointError("this edit mapper's layer gate has no routing table; set it with "
                                  "EditMapper.route_by(guide, vocabulary) before editing.")
        q = torch.softmax(self.config.prior_scale * text @ self.route_text.to(text.dtype).t(), dim=1)  # [N, R]
        return q @ self.layer_mask[self.route_attribute].to(q.dtype)  # each route's attribute's layers

    def gate(self, offset: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``offset`` [N, num_ws, w_dim] kept to the layers of the attribute each prompt ``text`` [N, D]
        is about (:meth:`layer_gate`); unchanged for a mapper without a gate."""
        return offset * self.layer_gate(text)[:, :, None] if self.config.layer_routes else offset

    def with_layer_gate(self, attribute_layers: dict, layer_routes: int, **config_fields) -> EditMapper:
        """A copy of this mapper with the given layer gate (its routing table still to be set with
        :meth:`route_by`: until then a gated copy refuses to edit) and any other
        ``config_fields`` replaced (e.g. the new vocabulary): the way to add a gate to a mapper trained
        without one, before fine-tuning it. The copy is in the same train/eval mode."""
        from dataclasses import replace

        new = type(self)(replace(self.config, attribute_layers=dict(attribute_layers), layer_routes=layer_routes,
                                 **config_fields))
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("route_")}
        missing, unexpected = new.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"route_text", "route_attribute"}:
            raise ValueError(f"cannot carry the weights over: missing {missing}, unexpected {unexpected}")
        return new.to(self.index_embed.weight.device).train(self.training)

    def value_prior(self, text: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The prior offset [N, num_ws, w_dim] for prompts ``text`` [N, D] on images whose guide
        embeddings are ``source`` [N, D]: the prompt is routed to the values it names, ``q`` = softmax
        over every value of ``prior_scale`` x cos(prompt, value prompt) (a text-to-text match, so a
        synonym or a new wording lands on its value); the source is read per attribute, ``p`` =
        softmax over the attribute's values of ``prior_scale`` x cos(image, value prompt) (the guide's
        zero-shot reading); the offset is ``sum_v (q_v - r_a(v) p_v) mean_v`` with ``r_a`` the mass
        ``q`` puts on attribute ``a``: from the current value's mean latent to the asked one's, for
        the attribute the prompt is about (InterFaceGAN-style class means, Shen et al., CVPR 2020,
        labelled by the guide instead of a classifier)."""
        scale = self.config.prior_scale
        t = self.prior_text.to(text.dtype)
        q = torch.softmax(scale * text @ t.t(), dim=1)                      # [N, V]
        logits = scale * source.to(text.dtype) @ t.t()
        onehot = nn.functional.one_hot(self.prior_attribute).to(q.dtype)   # [V, A]
        r = (q @ onehot) @ onehot.t()                                       # mass on each value's attribute
        p = torch.zeros_like(logits)                                        # the source's reading, per attribute
        for a in range(onehot.shape[1]):
            cols = self.prior_attribute == a
            p[:, cols] = torch.softmax(logits[:, cols], dim=1)
        weights = q - r * p                                                 # [N, V]
        return torch.einsum("nv,vkd->nkd", weights, self.prior_means.to(text.dtype))

    def check_guide(self, digest: str, embed_dim: int, source: str = "the HD-VILA model") -> None:
        """Refuse a guide other than the one the mapper was trained with (its text space differs)."""
        c = self.config
        if embed_dim != c.embed_dim:
            raise CheckpointError(f"{source} embeds in {embed_dim} dimensions; this edit mapper reads {c.embed_dim}. "
                                  f"Use the HD-VILA model it was trained with, or train a mapper with "
                                  f"generation/train_mapper.py --hdvila.")
        if c.guide_digest and digest and digest != c.guide_digest:
            raise CheckpointError(f"{source} (weights digest {digest}) is not the HD-VILA model this edit mapper was "
                                  f"trained with ({c.guide_digest}): its embeddings would steer the mapper wrongly. "
                                  f"Use that model, or train a mapper for yours with "
                                  f"generation/train_mapper.py --hdvila.")

    def forward(self, ws: torch.Tensor, text: torch.Tensor, source: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
        """ws [N, num_ws, w_dim]; text, source [N, D] (L2-normalised); w_avg [w_dim] -> offsets [N, num_ws, w_dim]."""
        c = self.config
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (c.num_ws, c.w_dim):
            raise ValueError(f"ws must be [N, {c.num_ws}, {c.w_dim}], got {tuple(ws.shape)}")
        n = ws.shape[0]
        if text.shape != (n, c.embed_dim) or source.shape != (n, c.embed_dim):
            raise ValueError(f"text and source must be [{n}, {c.embed_dim}], "
                             f"got {tuple(text.shape)}, {tuple(source.shape)}")
        dtype = self.index_embed.weight.dtype
        text_in = text.to(dtype)
        prior = self.value_prior(text_in, source.to(dtype)) if c.prior_values else None
        w = (ws.to(dtype) - w_avg.to(dtype)) / c.w_scale
        idx = self.index_embed.weight[None].expand(n, -1, -1)
        text = (text.to(dtype) - self.text_mean) / self.text_std
        source = (source.to(dtype) - self.source_mean) / self.source_std
        cond = self.condition(torch.cat([normalize_2nd_moment(text, dim=-1), normalize_2nd_moment(source, dim=-1)],
                                        dim=1))
        x = torch.cat([w, idx, cond[:, None].expand(n, c.num_ws, -1)], dim=2)
        parts, order = [], []
        for name, mlp in self.mlps.items():
            parts.append(mlp(x[:, c.groups[name]], cond))
            order += list(c.groups[name])
        out = torch.cat(parts, dim=1)[:, torch.argsort(torch.tensor(order))] * c.w_scale  # back to W+ order
        return self.gate(out if prior is None else out + prior, text_in)

    def edit(self, ws: torch.Tensor, text: torch.Tensor, source: torch.Tensor, w_avg: torch.Tensor,
             strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        """ws + strength * offset; ``strength`` a float or [N]."""
        s = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device).reshape(-1, 1, 1)
        return ws + s * self.forward(ws, text, source, w_avg).to(ws.dtype)
