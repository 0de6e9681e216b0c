"""Editing speed and memory: the one-pass path against the StyleCLIP path, for one real frame end to end.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_edit.py --threads 1
    .venv/bin/python benchmarks/bench_edit.py --device cuda
    .venv/bin/python benchmarks/bench_edit.py --smoke   # a check that it runs: 1 thread, 1 repeat, 2 steps,
                                                        # reference ops

- **one pass**: encoder + text embedding + mapper + generator (``EditPipeline(method='mapper')``);
- **one pass on a refined inversion**: the same with ``refine_steps=N`` projector steps after the
  encoder, for each N of ``--refine`` (the option ``hdvila edit --refine-steps`` and the web UI's
  refinement slider give: slower, and keeps more of the frame; its effect is in docs/results.md);
- **StyleCLIP path**: the 300-step projector (W+, the generator's stored noise, pixel losses: not the
  texture term ``EditPipeline.invert`` adds by default) + 300-step latent optimisation with the
  HD-VILA guide (``method='optimize'``), called step by step as ``EditPipeline.__call__`` runs them.

Both on the bundled generator (64 px) and HD-VILA model; the encoder and mapper are freshly
initialised at the bundled configuration (speed does not depend on their weights). The one-pass time
is split into the network forwards (encoder, text tower, HD-VILA image tower for the source embedding,
mapper, generator) and the rest (input policy, tokenisation, post-processing), timed inside one call.
Best of ``--repeats``; peak memory is the process's maximum resident set (CUDA: max allocated).
Compare the ratio, measured in one run on one machine; absolute times on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict


def build(device: str):
    import torch

    from generation.editing.pipeline_edit import EditPipeline
    from generation.presets import demo_vocabulary
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import bundled

    G = load_stylegan2(bundled("stylegan2-demo64")).float().eval()
    hdvila = HDVILAModel.from_pretrained(bundled("hdvila-mini")).float().eval()
    vocabulary = demo_vocabulary()  # the mapper with its value prior, as the bundled one
    pipe = EditPipeline.untrained(G, hdvila, vocabulary=vocabulary, mapper_kwargs={
        "prior_values": sum(len(vocabulary.values(a)) for a in vocabulary.names)}).to(device)
    for component in pipe.components.values():  # a Pipeline is not a Module: each network goes to eval mode
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed_forwards(pipe) -> dict[str, float]:
    """Wrap the networks' forwards to accumulate their wall time per call of the pipeline."""
    import torch

    spent = defaultdict(float)

    def wrap(module, name):
        orig = module.forward

        def forward(*a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = orig(*a, **k)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            spent[name] += time.perf_counter() - t
            return out
        module.forward = forward

    wrap(pipe.encoder, "encoder")
    wrap(pipe.mapper, "mapper")
    wrap(pipe.generator.synthesis, "generator")
    orig_text, orig_img = pipe.hdvila.get_text_features, pipe.hdvila.get_image_features

    def text(*a, **k):
        t = time.perf_counter()
        out = orig_text(*a, **k)
        spent["hdvila text"] += time.perf_counter() - t
        return out

    def image(*a, **k):
        t = time.perf_counter()
        out = orig_img(*a, **k)
        spent["hdvila image"] += time.perf_counter() - t
        return out
    pipe.hdvila.get_text_features, pipe.hdvila.get_image_features = text, image
    return spent


def _step_list(text: str) -> list[int]:
    """``--refine``: "10,25" -> [10, 25]; "" -> []."""
    try:
        steps = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if any(n < 1 for n in steps):
        raise argparse.ArgumentTypeError(f"refinement steps must be >= 1, got {text!r}")
    return steps


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import torch
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--refine", type=_step_list, default="10,25,50,100",
                   help="comma-separated inversion refinement steps to time the one-pass edit with ('': none)")
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): 1 thread, 1 repeat, 2 steps, --refine 2, the reference "
                   "ops; not a measurement")
    args = p.parse_args(argv)
    if args.smoke:
        import os

        os.environ["HDVILA_OPS_IMPL"] = "ref"  # nothing to compile
        args.threads, args.repeats, args.steps, args.refine = 1, 1, 2, [2]
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = build(args.device)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    prompt = "make it striped"
    pipe(image, prompt)  # warm-up (first calls allocate, load the tokenizer)
    refined = {}  # timed before the forwards are wrapped: no per-forward synchronisation in these
    if args.refine:
        pipe(image, prompt, refine_steps=1)  # warm-up of the projector's path
    for n in args.refine:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            pipe(image, prompt, method="mapper", refine_steps=n)
            times.append(time.perf_counter() - t)
        refined[n] = round(min(times), 3)
    spent = timed_forwards(pipe)
    one = []
    for _ in range(args.repeats):
        spent.clear()
        t = time.perf_counter()
        pipe(image, prompt, method="mapper")
        one.append((time.perf_counter() - t, dict(spent)))
    best_t, parts = min(one, key=lambda r: r[0])
    t = time.perf_counter()
    # The StyleCLIP path as StyleCLIP has it: a pixel-loss projector (no texture term), then optimisation.
    x = pipe.prepare_images([image])[0]
    ws, _, _ = pipe.invert(x, args.steps, texture_weight=0.0)
    pipe.postprocess(pipe.synthesize(pipe.edit_latents(ws, pipe.encode_prompt(prompt, 1), "optimize", 1.0, args.steps)))
    slow = time.perf_counter() - t
    inside = sum(parts.values())
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "one_pass_s": round(best_t, 4),
                      "forwards_s": {k: round(v, 4) for k, v in parts.items()},
                      "outside_forwards_share": round(1 - inside / best_t, 4),
                      "one_pass_with_refine_steps_s": refined,
                      f"styleclip_path_s ({args.steps}-step projector + {args.steps}-step optimisation)":
                          round(slow, 2),
                      "speedup": round(slow / best_t, 1), "peak_memory_mib": round(peak)}, indent=1))


if __name__ == "__main__":
    main()
