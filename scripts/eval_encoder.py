"""Evaluate encoder folders (or checkpoint ema folders).
Selection (judge-free) on 128 test-split renders, seed 1: PSNR, object PSNR, IoU, texture.
Report (judge) on N test-split renders, seed 0 (those of `hdvila eval-edit`): per-attribute no-edit
preservation against the source, all five, PSNR."""
import json, sys, time, argparse, torch
torch.set_num_threads(1)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from generation.stylegan2.convert import load_stylegan2
from generation.editing.encoder import LatentEncoder
from generation.train_encoder import validate, reconstruct
from generation.data import render_demo_images
from hdvila.judge.model import load_judge
from hdvila.judge.evaluate import judge_images
from generation.stylegan2.projector import psnr

ap = argparse.ArgumentParser()
ap.add_argument("encoders", nargs="+")
ap.add_argument("--num", type=int, default=200)
ap.add_argument("--sel", type=int, default=128)
ap.add_argument("--no_judge", action="store_true")
a = ap.parse_args()
G = load_stylegan2("checkpoints/stylegan2-demo64").eval().requires_grad_(False).float()
sel = torch.from_numpy(render_demo_images(a.sel, 64, split="test", seed=1))
rep = torch.from_numpy(render_demo_images(a.num, 64, split="test", seed=0)).float() / 127.5 - 1
judge = load_judge()
src = {k: v[0] for k, v in judge_images(judge, rep).items()}
for path in a.encoders:
    enc = LatentEncoder.from_pretrained(path).float().eval()
    out = {"encoder": path}
    out.update({k.replace("val/", "sel/"): round(v, 4) for k, v in validate(enc, G, sel, __import__("pathlib").Path("/tmp/sel.png")).items()})
    if not a.no_judge:
        with torch.no_grad():
            rec = torch.cat([reconstruct(G, enc(rep[i:i + 50], G)).clamp(-1, 1) for i in range(0, len(rep), 50)])
            rec = ((rec + 1) * 127.5).round() / 127.5 - 1  # as saved 8-bit images
        out["psnr"] = round(sum(psnr(rec[i:i+1], rep[i:i+1]) for i in range(len(rep))) / len(rep), 2)
        r = {k: v[0] for k, v in judge_images(judge, rec).items()}
        allk = torch.ones(len(rep), dtype=torch.bool)
        for k in r:
            same = r[k] == src[k]
            allk &= same
            out[k] = round(100 * same.float().mean().item(), 1)
        out["all5"] = round(100 * allk.float().mean().item(), 1)
    print(json.dumps(out), flush=True)
