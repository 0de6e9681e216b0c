"""One-off (issue 29): the projector refinement after the bundled encoder, steps x learning rate, judge-free.
48 test renders (seed 1, not eval-edit's seed 0): PSNR, object IoU, texture distance, s / image."""
import sys, time, json, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from generation.editing.pipeline_edit import EditPipeline
from generation.data import render_demo_images
from generation import train_encoder
from hdvila.paths import bundled

pipe = EditPipeline.from_pretrained(bundled("edit-demo64"))
x = torch.from_numpy(render_demo_images(48, 64, split="test", seed=1)).float() / 127.5 - 1
for spec in sys.argv[1:]:
    steps, lr = int(spec.split(":")[0]), float(spec.split(":")[1])
    t = time.perf_counter()
    ws, psnrs, rec = pipe.invert(x, steps, refine_lr=lr)
    dt = (time.perf_counter() - t) / len(x)
    m = train_encoder.shape_and_pattern_metrics(x, rec.float())
    print(json.dumps({"steps": steps, "lr": lr, "psnr": round(sum(psnrs) / len(psnrs), 2),
                      "iou": round(m["val/iou"], 4), "texture": round(m["val/texture"], 4), "s_per_image": round(dt, 3)}),
          flush=True)
