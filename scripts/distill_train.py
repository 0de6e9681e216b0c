"""One-off (issue 29): fine-tune the bundled encoder (encoder-r1 step 1,800) on refined-inversion targets of
train renders: W+ regression to the targets + pixel MSE + texture loss through the generator."""
import sys, time, glob, copy, json, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from generation.editing.encoder import LatentEncoder
from generation.stylegan2.convert import load_stylegan2
from generation.stylegan2.projector import texture_loss, w_statistics
from generation.data import render_demo_images
from generation import train_encoder
from hdvila.paths import bundled
minutes, lam = float(sys.argv[1]), float(sys.argv[2])
out = Path(sys.argv[3]); out.mkdir(parents=True, exist_ok=True)
G = load_stylegan2(bundled("stylegan2-demo64")).eval().requires_grad_(False).float()
enc = LatentEncoder.from_pretrained("runs/encoder-r1/checkpoint-1800/ema").float()
files = sorted(glob.glob("runs/distill/targets-*.pt"))
tg = [torch.load(f, weights_only=True) for f in files]
idx = sum([t["index"] for t in tg], []); ws = torch.cat([t["ws"] for t in tg])
n = len(idx); px = render_demo_images(n, 64, split="train", seed=0)
x_all = torch.from_numpy(px).float() / 127.5 - 1
n_tr = n - 50
_, w_std = w_statistics(G, 2000)
w_std = w_std / G.w_dim ** 0.5  # per-entry spread of w: a random w is at mean squared distance 1
val = torch.from_numpy(render_demo_images(128, 64, split="test", seed=1))  # uint8, as validate takes
def evaluate(step):
    enc.eval()
    with torch.no_grad():
        held = ((enc(x_all[n_tr:], G) - ws[n_tr:]) / w_std).square().mean().item()
        fit = ((enc(x_all[:64], G) - ws[:64]) / w_std).square().mean().item()
        m = train_encoder.validate(enc, G, val, out / f"val-{step:04d}.png")
    enc.train()
    r = {"step": step, "held_w_mse": held, "train_w_mse": fit, **m}
    print(json.dumps(r), flush=True)
    enc.save_pretrained(out / f"step-{step:04d}")
    return r
print("targets", n, "train", n_tr, "w_std", w_std, flush=True)
opt = torch.optim.Adam(enc.parameters(), lr=1e-4, betas=(0.9, 0.99))
g = torch.Generator().manual_seed(0)
t0, step = time.time(), 0
evaluate(0)
while time.time() - t0 < minutes * 60:
    b = torch.randint(0, n_tr, (16,), generator=g)
    x, wt = x_all[b], ws[b]
    w = enc(x, G)
    rec = G.render(w)
    lw = ((w - wt) / w_std).square().mean()
    li = (rec - x).square().mean() + 10 * texture_loss(rec, x).mean()
    loss = lam * lw + li
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0); opt.step()
    step += 1
    if step % 10 == 0:
        print(step, f"lw {lw.item():.4f} li {li.item():.4f}", flush=True)
    if step % 100 == 0:
        evaluate(step)
evaluate(step)
