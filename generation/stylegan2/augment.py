"""Differentiable augmentation of the images the discriminator sees, with an optional adaptive
probability (ADA-style), for training StyleGAN2 on small data sets.

Every image shown to D, real or generated, goes through the same random pipeline, so D never sees
an un-augmented image and G is not pushed to produce augmented-looking images as long as the
probability ``p`` stays moderate (the ADA paper finds these transforms safe up to p ~ 0.8). Each
operation is applied to each sample independently with probability ``p``:

- ``flip``: horizontal mirror (kornia ``RandomHorizontalFlip``);
- ``translation``: integer shift by up to 1/8 of the side in x and y, reflected borders (kornia
  ``RandomAffine`` with nearest sampling, which makes the shift a whole number of pixels);
- ``color``: brightness offset U(-0.2, 0.2), contrast factor 2^U(-0.5, 0.5) about the image mean,
  saturation factor 2^U(-1, 1) about the per-pixel grey level. Written here rather than with
  kornia's ``ColorJiggle``, which clamps to [0, 1]: generated images overshoot [-1, 1] early in
  training and a clamp would cut their gradients.

All operations are differentiable twice (R1 differentiates D's gradient through them) and draw
their randomness from the global torch RNG.

Blur (``blur_sigma``, set by the training loop): a Gaussian blur of every image D sees, applied
first, used only early in training and faded out (StyleGAN3's recipe: ``blur_init_sigma`` 10 px fading
over 200 kimg at 256+ px). It hides the high frequencies an early generator cannot draw yet (sharp
edges, fine texture), so D must first compare layout and colour instead of winning on sharpness.

Adaptive ``p`` (:class:`AdaptiveAugment`): every ``interval`` steps, ``r_t = E[sign(D(real))]`` is
compared with a target (0.6): above it D is overfitting and ``p`` rises, below it ``p`` falls, at a
speed that lets ``p`` go from 0 to 1 in ``speed_kimg`` thousand images.
"""

from __future__ import annotations

import torch
from torch import nn

AUGMENT_OPS = ("flip", "translation", "color")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images [N, C, H, W] with a Gaussian of ``sigma`` pixels (taps out to 3 sigma, zero
    padding, output the same size); differentiable twice. ``sigma <= 0`` returns ``x`` unchanged."""
    if sigma <= 0:
        return x
    from generation.stylegan2.ops import filter2d, setup_filter

    radius = max(1, int(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32).square() / (2 * sigma ** 2))
    return filter2d(x, setup_filter(taps, device=x.device, separable=True).to(x.dtype))


def blur_sigma(cur_nimg: int, init_sigma: float, fade_kimg: float) -> float:
    """The D-input blur after ``cur_nimg`` images: ``init_sigma`` fading linearly to 0 at ``fade_kimg``."""
    if init_sigma <= 0 or fade_kimg <= 0:
        return 0.0
    return init_sigma * max(0.0, 1.0 - cur_nimg / (fade_kimg * 1000.0))


def parse_ops(spec: str | None) -> tuple[str, ...]:
    """``"flip,translation"`` -> ("flip", "translation"); ``None``/""/"none" -> (); ``"all"`` -> all ops.

    Raises ValueError naming the unknown op."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return ()
    if spec.strip().lower() == "all":
        return AUGMENT_OPS
    ops = tuple(dict.fromkeys(s.strip().lower() for s in spec.split(",") if s.strip()))
    unknown = [o for o in ops if o not in AUGMENT_OPS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {', '.join(AUGMENT_OPS)}, 'all' or 'none'")
    return ops


def _per_sample(n: int, p: float, device: torch.device) -> torch.Tensor:
    """[n, 1, 1, 1] float mask: 1 with probability p."""
    return (torch.rand([n, 1, 1, 1], device=device) < p).float()


def color_transform(x: torch.Tensor, p: float) -> torch.Tensor:
    """Random brightness, contrast and saturation, each per sample with probability p.

    x: [N, 3, H, W] in ~[-1, 1] (not clamped) -> same shape and dtype.
    """
    n, dev = x.shape[0], x.device
    shift = (torch.rand([n, 1, 1, 1], device=dev) * 0.4 - 0.2) * _per_sample(n, p, dev)
    x = x + shift.to(x.dtype)
    contrast = torch.exp2((torch.rand([n, 1, 1, 1], device=dev) - 0.5) * _per_sample(n, p, dev))
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * contrast.to(x.dtype) + mean
    if x.shape[1] == 3:
        sat = torch.exp2((torch.rand([n, 1, 1, 1], device=dev) * 2 - 1) * _per_sample(n, p, dev))
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * sat.to(x.dtype) + grey
    return x


class AugmentPipe(nn.Module):
    """Images [N, C, H, W] in ~[-1, 1] -> augmented images, same shape and dtype.

    ``ops``: a subset of :data:`AUGMENT_OPS`; ``p``: the probability of each op per sample, in [0, 1]
    (settable; 0 makes the pipe an identity that costs nothing).
    """

    def __init__(self, ops: tuple[str, ...] | list[str], p: float = 0.0):
        super().__init__()
        for op in ops:
            if op not in AUGMENT_OPS:
                raise ValueError(f"unknown augmentation {op!r}; choose from {AUGMENT_OPS}")
        self.ops = tuple(ops)
        self.flip = self.translate = None
        if "flip" in self.ops or "translation" in self.ops:  # kornia only when a geometric op is used
            import kornia.augmentation as K

            self.flip = K.RandomHorizontalFlip(p=0.0) if "flip" in self.ops else None
            self.translate = (K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), resample="nearest",
                                             padding_mode="reflection", p=0.0) if "translation" in self.ops else None)
        self._p = 0.0
        self.p = p
        self.blur_sigma = 0.0  # Gaussian blur (pixels) applied before the ops; see gaussian_blur

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        value = float(min(max(value, 0.0), 1.0))
        self._p = value
        for module in (self.flip, self.translate):
            if module is not None:
                module.p = value

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = gaussian_blur(images, self.blur_sigma)
        if not self.ops or self._p <= 0.0:
            return x
        if self.flip is not None:
            x = self.flip(x)
        if self.translate is not None:
            x = self.translate(x)
        if "color" in self.ops:
            x = color_transform(x, self._p)
        return x

    def extra_repr(self) -> str:
        return f"ops={self.ops}, p={self._p:.4f}, blur_sigma={self.blur_sigma:.3f}"


class AdaptiveAugment:
    """Adjusts an :class:`AugmentPipe`'s ``p`` from the sign of D's outputs on real images.

    Call :meth:`accumulate` with each batch's real logits (already summed over processes if
    distributed: pass the sums) and :meth:`step` once per training step with the global batch size.
    State (``p`` and the running sums) is saved with :meth:`state_dict` so a resumed run continues
    exactly.
    """

    def __init__(self, pipe: AugmentPipe, target: float = 0.6, interval: int = 4, speed_kimg: float = 500.0):
        if not 0 < target < 1:
            raise ValueError(f"ADA target must be in (0, 1), got {target}")
        self.pipe, self.target, self.interval, self.speed_kimg = pipe, target, max(1, interval), speed_kimg
        self.sign_sum = 0.0
        self.count = 0.0
        self.steps = 0
        self.last_rt: float | None = None

    def accumulate(self, sign_sum: float, count: float) -> None:
        """Add ``sum(sign(D(real)))`` over ``count`` real images."""
        self.sign_sum += float(sign_sum)
        self.count += float(count)

    def step(self, batch_size: int) -> None:
        """After a training step of ``batch_size`` images: every ``interval`` steps, move p."""
        self.steps += 1
        if self.steps % self.interval or self.count == 0:
            return
        rt = self.sign_sum / self.count
        adjust = (1.0 if rt > self.target else -1.0) * batch_size * self.interval / (self.speed_kimg * 1000.0)
        self.pipe.p = self.pipe.p + adjust
        self.last_rt = rt
        self.sign_sum = self.count = 0.0

    def state_dict(self) -> dict:
        return {"p": self.pipe.p, "sign_sum": self.sign_sum, "count": self.count, "steps": self.steps,
                "last_rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.pipe.p = float(state["p"])
        self.sign_sum, self.count = float(state["sign_sum"]), float(state["count"])
        self.steps, self.last_rt = int(state["steps"]), state.get("last_rt")
