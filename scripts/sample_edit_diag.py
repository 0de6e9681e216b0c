"""Diagnostic of issues 29/30 (kept in history only): on 128 generator samples (exact latents), does the encoder keep the attributes,
and does the mapper keep the others when editing the exact latent vs the encoder's inversion?"""
import sys, torch, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from apps.pipelines import load_edit_pipeline
from hdvila.judge.model import load_judge
from hdvila.demo.attributes import ATTRIBUTES
from generation.presets.demo_eval import _read
from generation.presets.demo import demo_vocabulary
pipe = load_edit_pipeline(sys.argv[1] if len(sys.argv) > 1 else None); judge = load_judge()
G = pipe.generator; voc = demo_vocabulary()
n = 128
torch.manual_seed(5)
with torch.no_grad():
    w = G.mapping(torch.randn(n, G.z_dim), None)
    x = G.render(w).clamp(-1, 1)
    src = _read(judge, x)
    ws_enc, _, rec = pipe.invert(x)
    r = _read(judge, rec)
    same = torch.stack([r[a] == src[a] for a in src]).float()
    print("encoder on samples: kept", {a: round(float((r[a] == src[a]).float().mean()), 3) for a in src}, "all", float(same.prod(0).mean()))
rng = np.random.default_rng(3)
for name, ws in (("exact", w), ("encoder", ws_enc)):
    base = _read(judge, pipe.synthesize(ws).cpu())
    rows = {a: {"succ": [], "kept": []} for a in voc.editable}
    for attribute in voc.editable:
        cases = []
        for i in range(n):
            cur = ATTRIBUTES[attribute][int(src[attribute][i])] if attribute in src else None
            _, value = voc.sample_edit({attribute: cur}, rng, attribute)
            cases.append((value, voc.edit_prompt(attribute, value, rng)))
        text = pipe.encode_prompt([c[1] for c in cases], n)
        ed = pipe.edit_latents(ws, text, "mapper", 1.0)
        rd = _read(judge, pipe.synthesize(ed).cpu())
        for i, (value, _) in enumerate(cases):
            rows[attribute]["succ"].append(int(rd[attribute][i]) == ATTRIBUTES[attribute].index(value))
            rows[attribute]["kept"].append(all(int(rd[k][i]) == int(base[k][i]) for k in rd if k != attribute))
            for k in rd:
                if k != attribute:
                    rows[attribute].setdefault("kept_" + k, []).append(int(rd[k][i]) == int(base[k][i]))
    print(name, {a: {k: round(float(np.mean(v)), 3) for k, v in r_.items()} for a, r_ in rows.items()})
