"""One-off (issue 29): refined W+ targets for the first N train-split renders (encoder + 100 texture-aware
projector steps, what EditPipeline.invert(refine_steps=100) does), saved in chunks (resumable)."""
import sys, time, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from apps.pipelines import load_edit_pipeline
from generation.data import render_demo_images
n, chunk = int(sys.argv[1]), 25
out = Path("runs/distill")
pipe = load_edit_pipeline(None)
px = render_demo_images(n, 64, split="train", seed=0)
for i in range(0, n, chunk):
    f = out / f"targets-{i:05d}.pt"
    if f.exists():
        continue
    t = time.time()
    x = torch.from_numpy(px[i:i + chunk]).float() / 127.5 - 1
    ws, psnr, _ = pipe.invert(x, refine_steps=100)
    torch.save({"index": list(range(i, i + len(x))), "ws": ws.float().cpu(), "psnr": psnr}, f)
    print(i, f"{(time.time() - t) / len(x):.2f} s/img", sum(psnr) / len(psnr), flush=True)
