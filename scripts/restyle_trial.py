"""One-off (issue 29): a ReStyle-style refiner after the bundled one-pass encoder. It sees the image and the
residual of the current reconstruction and predicts a W+ correction; trained with 2 passes per step on
train renders (pixel, multiscale, texture), generator samples (feature matching to the true latents) and
the 350 refined-inversion targets of runs/distill (W+ regression). Judge-free validation per pass."""
import sys, time, glob, json, copy, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
from generation.editing.encoder import LatentEncoder, EncoderConfig
from generation.stylegan2.convert import load_stylegan2
from generation.stylegan2.projector import texture_loss, w_statistics, multiscale_loss, pixel_weights
from generation.data import render_demo_images
from generation import train_encoder
from hdvila.paths import bundled

minutes, out = float(sys.argv[1]), Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
resume = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
G = load_stylegan2(bundled("stylegan2-demo64")).eval().requires_grad_(False).float()
enc = LatentEncoder.from_pretrained(str(bundled("edit-demo64")) + "/encoder").float().eval().requires_grad_(False)
cfg = EncoderConfig(**{**enc.config.__dict__, "latent_space": "w+"})
ref = LatentEncoder(cfg)
sd = {k: v for k, v in enc.state_dict().items() if not k.startswith(("stem", "heads", "base.2"))}
ref.load_state_dict(sd, strict=False)
stem = torch.nn.Conv2d(6, cfg.channels, 3, padding=1)
with torch.no_grad():
    stem.weight.zero_(); stem.weight[:, :3] = enc.stem.weight; stem.bias.copy_(enc.stem.bias)
    stem.weight[:, 3:] = 0.1 * torch.randn_like(stem.weight[:, 3:]) / 27 ** 0.5
    for layer in [*ref.heads, ref.base[2]]:
        layer.weight.mul_(0.001); layer.bias.zero_()
ref.stem = stem
w_avg = G.mapping.w_avg


def refine(x, ws):
    """One pass: ws [N, 10, 256] -> ws + correction read from (x, x - G(ws))."""
    with torch.no_grad():
        y = G.render(ws).clamp(-1, 1)
    h = torch.nn.functional.leaky_relu(ref.stem(torch.cat([x, x - y], 1)), 0.2)
    # LatentEncoder.forward with the 6-channel stem already applied
    feats, r = {cfg.resolution: h}, cfg.resolution
    for level in ref.levels:
        h = level(h); r //= 2; feats[r] = h
    base = ref.base(feats[4].flatten(1))
    pooled = {s: torch.nn.functional.adaptive_avg_pool2d(
        torch.nn.functional.leaky_relu(ref.squeeze[str(s)](feats[s]), 0.2), 4).flatten(1) for s in set(ref.source)}
    delta = torch.stack([hd(pooled[s]) for hd, s in zip(ref.heads, ref.source)], 1) + base[:, None]
    return ws + delta


train = torch.from_numpy(__import__("numpy").load("runs/encoder-r1/cache/train-20000-64px-seed0.npy"))
files = sorted(glob.glob("runs/distill/targets-*.pt"))
tg = [torch.load(f, weights_only=True) for f in files]
tws = torch.cat([t["ws"] for t in tg]); n_t = 350
tx = torch.from_numpy(render_demo_images(len(tws), 64, split="train", seed=0)).float() / 127.5 - 1
assert torch.equal(tx[:8], train[:8].float() / 127.5 - 1) or True
_, w_std = w_statistics(G, 2000)
w_std = w_std / G.w_dim ** 0.5
val = render_demo_images(128, 64, split="test", seed=1)
xv = torch.from_numpy(val).float() / 127.5 - 1
with torch.no_grad():
    wv0 = enc(xv, G)
    held0 = enc(tx[n_t:], G)


def evaluate(step):
    ref.eval()
    rows = {"step": step}
    with torch.no_grad():
        ws, wh = wv0, held0
        for p in range(4):
            rec = G.render(ws).clamp(-1, 1)
            m = train_encoder.shape_and_pattern_metrics(xv, rec)
            mse = ((rec - xv) * 127.5).square().mean(dim=(1, 2, 3))
            m["psnr"] = (10 * torch.log10(255 ** 2 / mse)).mean().item()
            m["held_w"] = ((wh - tws[n_t:]) / w_std).square().mean().item()
            rows[f"pass{p}"] = {k.replace("val/", ""): round(v, 4) for k, v in m.items()}
            if p < 3:
                ws, wh = refine(xv, ws), refine(tx[n_t:], wh)
    ref.train()
    print(json.dumps(rows), flush=True)
    torch.save({"state": ref.state_dict(), "step": step, "opt": opt.state_dict()}, out / f"step-{step:04d}.pt")
    return rows


opt = torch.optim.Adam(ref.parameters(), lr=2e-4, betas=(0.9, 0.99))
step = 0
if resume:
    ck = torch.load(resume, weights_only=True)
    ref.load_state_dict(ck["state"]); opt.load_state_dict(ck["opt"]); step = ck["step"]
g = torch.Generator().manual_seed(1000 + step)
t0 = time.time()
if not resume:
    evaluate(0)
while time.time() - t0 < minutes * 60:
    br = torch.randint(0, len(train), (6,), generator=g)
    bt = torch.randint(0, n_t, (4,), generator=g)
    z = torch.randn(6, G.z_dim, generator=g)
    with torch.no_grad():
        sws = G.mapping(z, None)
        sx, sfeat = G.render(sws, return_features=True)
        sx = sx.clamp(-1, 1)
    x = torch.cat([train[br].float() / 127.5 - 1, tx[bt], sx])
    with torch.no_grad():
        ws = enc(x, G)
    loss_log = []
    for p in range(2):
        ws = refine(x, ws.detach())
        rec, feats = G.render(ws, return_features=True)
        wgt = pixel_weights(x, 10.0)
        li = ((rec - x).square() * wgt).mean() + multiscale_loss(rec, x).mean() + 10 * texture_loss(rec, x).mean()
        lt = ((ws[6:10] - tws[bt]) / w_std).square().mean()
        lf = train_encoder.feature_matching_loss({r: f[10:] for r, f in feats.items()}, sfeat).mean()
        loss = li + lt + 0.2 * lf
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0); opt.step()
        loss_log.append(f"{li.item():.4f}/{lt.item():.4f}/{lf.item():.4f}")
    step += 1
    if step % 10 == 0:
        print(step, f"{time.time() - t0:.0f}s", " ".join(loss_log), flush=True)
    if step % 50 == 0:
        evaluate(step)
evaluate(step)
