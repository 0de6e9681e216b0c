"""What a model trained on top of a frozen StyleGAN2 generator (super-resolution network, latent
encoder, edit mapper) records about that generator, so that another generator is refused."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from hdvila.modeling_utils import tensors_digest


def generator_fingerprint(G: nn.Module) -> dict:
    """Resolution, ``w_dim``, ``num_ws``, channels per block, and a digest of the constant input and
    ``w_avg`` (two tensors that differ between any two trained generators, and that fine-tuning the
    synthesis convolutions leaves alone)."""
    syn = G.synthesis
    channels = [int(getattr(syn, f"b{r}").conv1.weight.shape[0]) for r in syn.block_resolutions]
    return {"img_resolution": int(G.img_resolution), "w_dim": int(G.w_dim), "num_ws": int(G.num_ws),
            "channels": channels, "digest": tensors_digest((syn.b4.const, G.mapping.w_avg))}


def check_generator_fits(G: nn.Module, *, resolution: int, w_dim: int, num_ws: int, digest: str, what: str,
                         remedy: str, source: str = "the generator", channels: list[int] | None = None) -> None:
    """Raise :class:`~hdvila.errors.CheckpointError` unless ``G`` has this resolution, ``w_dim`` and
    ``num_ws`` (and, when given, these ``channels`` per synthesis block) and (when ``digest`` is set)
    this :func:`generator_fingerprint` digest. ``what`` names the model that depends on G ("this edit
    mapper"), ``remedy`` says what to do instead. Each message names every field that differs, with
    G's value and the expected one."""
    from hdvila.errors import CheckpointError

    fp = generator_fingerprint(G)
    want = {"img_resolution": resolution, "w_dim": w_dim, "num_ws": num_ws}
    if channels is not None:
        want["channels"] = list(channels)
    diff = [f"{k} {fp[k]} (expected {v})" for k, v in want.items() if fp[k] != v]
    if diff:
        raise CheckpointError(f"{source} does not fit {what}: " + ", ".join(diff) + f". {remedy}")
    if digest and fp["digest"] != digest:
        raise CheckpointError(f"{source} has the right shape but is not the generator {what} was trained with "
                              f"(digest {fp['digest']}, expected {digest}). {remedy}")


class GeneratorBound:
    """Mixin for a model trained on top of one frozen StyleGAN2 generator (latent encoder, edit mapper,
    super-resolution network): :meth:`check_generator` refuses any other generator.

    The model's ``self.config`` records the generator: ``resolution``, ``w_dim``, ``num_ws`` and
    ``generator_digest`` (its :func:`generator_fingerprint` digest; "" skips the digest check).
    A subclass sets ``generator_user`` (the model in messages: "this edit mapper") and
    ``generator_remedy`` (what to do instead), and overrides :meth:`generator_requirements` where its
    config names the fields otherwise or records more (the SR model: ``out_resolution``, channels).
    """

    generator_user: ClassVar[str] = "this model"
    generator_remedy: ClassVar[str] = "Use the generator it was trained with."

    def generator_requirements(self) -> dict:
        """Keyword arguments of :func:`check_generator_fits` that describe the expected generator:
        ``resolution``, ``w_dim``, ``num_ws``, ``digest`` (and optionally ``channels``)."""
        c = self.config
        return {"resolution": c.resolution, "w_dim": c.w_dim, "num_ws": c.num_ws, "digest": c.generator_digest}

    def check_generator(self, G: nn.Module, source: str = "the generator") -> None:
        """Raise :class:`~hdvila.errors.CheckpointError` unless ``G`` is the generator this model was
        trained with; ``source`` names G in the message (e.g. the command-line option it came from)."""
        check_generator_fits(G, **self.generator_requirements(), what=self.generator_user,
                             remedy=self.generator_remedy, source=source)
