"""StyleGAN2's modulated convolution with weight demodulation.

Each sample n has its own weight ``w_n[o, i] = weight[o, i] * style[n, i]``, demodulated to unit
norm per output channel: ``w_n[o] /= sqrt(sum_{i,ky,kx} w_n[o,i,ky,kx]^2 + 1e-8)``.

- ``fused_modconv=True``: the batch is folded into channels and all samples run as ONE grouped
  convolution (groups = N) with the per-sample weights (fastest for inference).
- ``fused_modconv=False``: the styles scale the activations instead, one shared-weight
  convolution runs, and the demodulation coefficients scale its output (cheaper weight
  gradients in training). Both give the same result.
"""

from __future__ import annotations

import torch

from generation.stylegan2.ops.conv2d_resample import conv2d_resample


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, down: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True,
                     impl: str = "auto") -> torch.Tensor:
    """x: [N, I, H, W]; weight: [O, I, kh, kw]; styles: [N, I]; noise: broadcastable to the output
    [N, O, H', W'] (or ``None``), added after demodulation. Returns [N, O, H', W'] in x's dtype,
    with H', W' as in :func:`conv2d_resample`.
    """
    n, in_ch, _, _ = x.shape
    out_ch, w_in, kh, kw = weight.shape
    if w_in != in_ch or styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
                         f"{tuple(styles.shape)} do not fit (expected styles [{n}, {in_ch}])")
    if x.dtype == torch.float16 and demodulate:
        # Rescale before modulating so fp16 cannot overflow; demodulation cancels the scale.
        weight = weight * (1 / (in_ch * kh * kw) ** 0.5 / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, in_ch, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight, impl=impl)
        if demodulate:
            # sum_{i,k} (w_oik s_ni)^2 = sum_i s_ni^2 sum_k w_oik^2: one [N, I] x [I, O] product instead of
            # materialising the [N, O, I, kh, kw] modulated weights (which dominated CPU training time).
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)

    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, out_ch, 1, 1, 1)
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype), f=resample_filter, up=up, down=down,
                        padding=padding, groups=n, flip_weight=flip_weight, impl=impl)
    x = x.reshape(n, out_ch, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)
