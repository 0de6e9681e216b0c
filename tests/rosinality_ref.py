"""Test helper: rosinality-format StyleGAN2 state dicts and a small forward pass in its conventions.

Written from the conventions of rosinality/stylegan2-pytorch checkpoints (key names, shapes, and
where the equalised-learning-rate gains are applied), not from its code, so that a converted model
can be checked against an independent computation:

* dense layers: ``y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul``; mapping layers use lr_mul 0.01
  and leaky ReLU(0.2) * sqrt(2) after adding the bias;
* modulated conv: ``s = affine(w)`` (lr_mul 1, bias stored including its +1), weight
  ``W[0] * s / sqrt(in * k * k)``, demodulated by ``rsqrt(sum(w^2) + 1e-8)``;
* up-sampling conv: transposed conv (stride 2, weight as stored), then a [1,3,3,1] blur (gain 4,
  padding 1/1); ToRGB skip: zero-insert up-sampling, blur (gain 4, padding 2/1);
* noise ``x + noise_weight * noise`` before the bias and activation; styles: conv1 ws[0], to_rgb1
  ws[1], then two convs and a to_rgb per resolution;
* discriminator: ConvLayer = [blur (down), conv W / sqrt(fan_in), bias + lrelu * sqrt(2)], residual
  blocks ``(main + skip) / sqrt(2)``, minibatch stddev (group 4, 1 feature), final conv and two
  dense layers.

The per-sample loop (no grouped convolutions) and the explicit zero-insertion resampler differ
on purpose from how either codebase implements these operations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def blur_kernel(gain: float = 1.0) -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(f, f)
    return k / k.sum() * gain


def resample(x: torch.Tensor, k: torch.Tensor, up: int = 1, down: int = 1,
             pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insert up-sampling, padding, FIR convolution (true convolution), sub-sampling."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kernel = k.flip([0, 1])[None, None].to(x.dtype)
    y = F.conv2d(x.reshape(n * c, 1, x.shape[2], x.shape[3]), kernel)
    x = y.reshape(n, c, y.shape[2], y.shape[3])
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.dim() - 2)
    return F.leaky_relu(x + bias.reshape(shape), 0.2) * SQRT2


def dense(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, lr_mul: float = 1.0,
          act: bool = False) -> torch.Tensor:
    y = x @ (w * (lr_mul / math.sqrt(w.shape[1]))).t()
    if b is None:
        return y
    return lrelu(y, b * lr_mul) if act else y + b * lr_mul


# ----------------------------------------------------------------------------------------------
# Generator.


def mapping(sd: dict, z: torch.Tensor, lr_mul: float = 0.01) -> torch.Tensor:
    x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        x = dense(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mul, act=True)
        i += 1
    return x


def modulated_conv(sd: dict, prefix: str, x: torch.Tensor, w: torch.Tensor, demodulate: bool = True,
                   up: bool = False) -> torch.Tensor:
    weight = sd[f"{prefix}.weight"][0]  # [out, in, k, k]
    out_c, in_c, k, _ = weight.shape
    styles = dense(w, sd[f"{prefix}.modulation.weight"], sd[f"{prefix}.modulation.bias"])
    results = []
    for i in range(x.shape[0]):
        wi = weight / math.sqrt(in_c * k * k) * styles[i].reshape(1, in_c, 1, 1)
        if demodulate:
            wi = wi * torch.rsqrt(wi.pow(2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xi = x[i:i + 1]
        if up:
            yi = F.conv_transpose2d(xi, wi.transpose(0, 1), stride=2)
            yi = resample(yi, blur_kernel(4.0), pad=(1, 1))
        else:
            yi = F.conv2d(xi, wi, padding=k // 2)
        results.append(yi)
    return torch.cat(results)


def styled_conv(sd: dict, prefix: str, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None,
                up: bool = False) -> torch.Tensor:
    x = modulated_conv(sd, f"{prefix}.conv", x, w, up=up)
    if noise is not None:
        x = x + sd[f"{prefix}.noise.weight"] * noise
    return lrelu(x, sd[f"{prefix}.activate.bias"])


def to_rgb(sd: dict, prefix: str, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    y = modulated_conv(sd, f"{prefix}.conv", x, w, demodulate=False) + sd[f"{prefix}.bias"]
    if skip is not None:
        y = y + resample(skip, blur_kernel(4.0), up=2, pad=(2, 1))
    return y


def synthesis(sd: dict, ws: torch.Tensor, use_noise: bool = True) -> torch.Tensor:
    """Image from W+ codes ``ws`` [N, num_ws, w_dim], with the stored noise maps ('const' noise)."""
    noise = (lambda i: sd[f"noises.noise_{i}"]) if use_noise else (lambda i: None)
    x = sd["input.input"].repeat(ws.shape[0], 1, 1, 1)
    x = styled_conv(sd, "conv1", x, ws[:, 0], noise(0))
    img = to_rgb(sd, "to_rgb1", x, ws[:, 1], None)
    j = 0
    while f"to_rgbs.{j}.conv.weight" in sd:
        x = styled_conv(sd, f"convs.{2 * j}", x, ws[:, 2 * j + 1], noise(2 * j + 1), up=True)
        x = styled_conv(sd, f"convs.{2 * j + 1}", x, ws[:, 2 * j + 2], noise(2 * j + 2))
        img = to_rgb(sd, f"to_rgbs.{j}", x, ws[:, 2 * j + 3], img)
        j += 1
    return img


def make_generator_state(size: int, style_dim: int, n_mlp: int, channels: dict[int, int], seed: int = 0,
                         lr_mul: float = 0.01) -> dict:
    """Random rosinality-format generator weights (names, shapes and buffers as in its checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = rnd(style_dim, style_dim) / lr_mul
        sd[f"style.{i}.bias"] = rnd(style_dim) * 0.1 / lr_mul
    c4 = channels[4]
    sd["input.input"] = rnd(1, c4, 4, 4)

    def conv(prefix: str, cin: int, cout: int, up: bool) -> None:
        sd[f"{prefix}.conv.weight"] = rnd(1, cout, cin, 3, 3)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = blur_kernel(4.0)
        sd[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * rnd(cin)
        sd[f"{prefix}.noise.weight"] = 0.2 * rnd(1)
        sd[f"{prefix}.activate.bias"] = 0.1 * rnd(cout)

    def rgb(prefix: str, cin: int, up: bool) -> None:
        if up:
            sd[f"{prefix}.upsample.kernel"] = blur_kernel(4.0)
        sd[f"{prefix}.conv.weight"] = rnd(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * rnd(cin)
        sd[f"{prefix}.bias"] = 0.1 * rnd(1, 3, 1, 1)

    conv("conv1", c4, c4, False)
    rgb("to_rgb1", c4, False)
    log_size = int(math.log2(size))
    cin = c4
    for i, r in enumerate(range(3, log_size + 1)):
        cout = channels[2 ** r]
        conv(f"convs.{2 * i}", cin, cout, True)
        conv(f"convs.{2 * i + 1}", cout, cout, False)
        rgb(f"to_rgbs.{i}", cout, True)
        cin = cout
    for i in range((log_size - 2) * 2 + 1):
        res = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = rnd(1, 1, res, res)
    return sd


# ----------------------------------------------------------------------------------------------
# Discriminator.


def conv_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, down: bool = False) -> torch.Tensor:
    k = w.shape[-1]
    if down:
        p = 2 + (k - 1)
        x = resample(x, blur_kernel(), pad=((p + 1) // 2, p // 2))
    x = F.conv2d(x, w / math.sqrt(w.shape[1] * k * k), stride=2 if down else 1, padding=0 if down else k // 2)
    return lrelu(x, b) if b is not None else x


def discriminator(sd: dict, img: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    x = conv_layer(img, sd["convs.0.0.weight"], sd["convs.0.1.bias"])
    k = 1
    while f"convs.{k}.conv1.0.weight" in sd:
        p = f"convs.{k}"
        y = conv_layer(x, sd[f"{p}.conv1.0.weight"], sd[f"{p}.conv1.1.bias"])
        y = conv_layer(y, sd[f"{p}.conv2.1.weight"], sd[f"{p}.conv2.2.bias"], down=True)
        s = conv_layer(x, sd[f"{p}.skip.1.weight"], None, down=True)
        x = (y + s) / SQRT2
        k += 1
    n, c, h, w = x.shape
    g = min(n, group_size)
    std = x.reshape(g, n // g, 1, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt()
    std = std.mean(dim=[2, 3, 4]).reshape(n // g, 1, 1, 1).repeat(g, 1, h, w)
    x = torch.cat([x, std], dim=1)
    x = conv_layer(x, sd["final_conv.0.weight"], sd["final_conv.1.bias"])
    x = dense(x.flatten(1), sd["final_linear.0.weight"], sd["final_linear.0.bias"], act=True)
    return dense(x, sd["final_linear.1.weight"], sd["final_linear.1.bias"])


def make_discriminator_state(size: int, channels: dict[int, int], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd: dict[str, torch.Tensor] = {"convs.0.0.weight": rnd(channels[size], 3, 1, 1),
                                   "convs.0.1.bias": 0.1 * rnd(channels[size])}
    log_size = int(math.log2(size))
    cin = channels[size]
    for k, i in enumerate(range(log_size, 2, -1), start=1):
        cout = channels[2 ** (i - 1)]
        p = f"convs.{k}"
        sd[f"{p}.conv1.0.weight"] = rnd(cin, cin, 3, 3)
        sd[f"{p}.conv1.1.bias"] = 0.1 * rnd(cin)
        sd[f"{p}.conv2.0.kernel"] = blur_kernel()
        sd[f"{p}.conv2.1.weight"] = rnd(cout, cin, 3, 3)
        sd[f"{p}.conv2.2.bias"] = 0.1 * rnd(cout)
        sd[f"{p}.skip.0.kernel"] = blur_kernel()
        sd[f"{p}.skip.1.weight"] = rnd(cout, cin, 1, 1)
        cin = cout
    c4 = channels[4]
    sd["final_conv.0.weight"] = rnd(c4, cin + 1, 3, 3)
    sd["final_conv.1.bias"] = 0.1 * rnd(c4)
    sd["final_linear.0.weight"] = rnd(c4, c4 * 16)
    sd["final_linear.0.bias"] = 0.1 * rnd(c4)
    sd["final_linear.1.weight"] = rnd(1, c4)
    sd["final_linear.1.bias"] = 0.1 * rnd(1)
    return sd
