"""Diagnostic of issue 30 (kept in history only): the v9 mapper offsets on 96 exact generator latents, restricted to W+ groups;
mask IoU with the source and the guide's reading of the asked value (judge-free), beside the judge's (report only).
Run: OMP_NUM_THREADS=1 .venv/bin/python scripts/layer_gate_diag.py (on the bundled v9 pipeline at this commit)."""
import sys, torch, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from apps.pipelines import load_edit_pipeline
from hdvila.judge.model import load_judge
from hdvila.demo.attributes import ATTRIBUTES
from generation.presets.demo_eval import _read
from generation.presets.demo import demo_vocabulary
from generation.editing.encoder import ws_groups
from generation.editing.value_objective import ValueReader
from generation.stylegan2.projector import foreground_mask
pipe = load_edit_pipeline(None); judge = load_judge()
G = pipe.generator; voc = demo_vocabulary(); reader = ValueReader(pipe.guide, voc)
groups = ws_groups(G.num_ws, 64); print(groups)
n = 96
torch.manual_seed(5)
with torch.no_grad():
    w = G.mapping(torch.randn(n, G.z_dim), None)
    x = G.render(w).clamp(-1, 1)
    src = _read(judge, x); msrc = foreground_mask(x)
rng = np.random.default_rng(3)
variants = {"all": groups["coarse"] + groups["medium"] + groups["fine"], "medium+fine": groups["medium"] + groups["fine"],
            "fine": groups["fine"], "coarse+medium": groups["coarse"] + groups["medium"]}
for attribute in voc.editable:
    cases = []
    for i in range(n):
        cur = ATTRIBUTES[attribute][int(src[attribute][i])]
        _, value = voc.sample_edit({attribute: cur}, rng, attribute)
        cases.append((value, voc.edit_prompt(attribute, value, rng)))
    text = pipe.encode_prompt([c[1] for c in cases], n)
    with torch.no_grad():
        off = pipe.edit_latents(w, text, "mapper", 1.0) - w
    for name, idx in variants.items():
        keep = torch.zeros(G.num_ws); keep[idx] = 1
        with torch.no_grad():
            img = pipe.synthesize(w + off * keep[None, :, None]).cpu()
            m = foreground_mask(img)
            iou = float(((m * msrc).sum((1, 2, 3)) / ((m + msrc).clamp(max=1).sum((1, 2, 3)) + 1e-6)).mean())
            gread = reader.read(pipe.guide.image_features(img))
            rd = _read(judge, img)
        tgt = torch.tensor([ATTRIBUTES[attribute].index(v) for v, _ in cases])
        g = float((gread[attribute] == tgt).float().mean()); s = float((rd[attribute] == tgt).float().mean())
        ks = float((rd["shape"] == src["shape"]).float().mean())
        print(f"{attribute:8s} {name:14s} IoU {iou:.3f} guide-read {g:.3f} | judge success {s:.3f} shape-kept {ks:.3f}", flush=True)
