#!/usr/bin/env bash
# One GPU-machine call for the StyleGAN2 issue: generator benchmarks at 64/256/1024 px (reference vs
# compiled ops), the CUDA op tests against the reference path, then the 64 px demo generator trained
# on the GPU for what is left of BUDGET_S. Everything comes back under $OUT (7 files: the device's
# limit is 8): log.txt, ckpt/ and last_samples.png.
#
# Meant for the `device` tool (a bare machine with python3 + torch + accelerate, no network):
#     run(command="bash scripts/device_stylegan2.sh", timeout_s=600)
# Session 8 (H100, 1,368 steps at batch 64 in 125 s = 0.09 s/step) used TRAIN_ARGS="--train_batch_size 64".
# The final checkpoint comes back as $OUT/ckpt; measure it here (CPU):
#     .venv/bin/python -m generation.stylegan2.metrics FILES_AT/ckpt/generator_ema
#     .venv/bin/python scripts/eval_stylegan2_default.py --generator FILES_AT/ckpt/generator_ema
# Only the standard library, torch, numpy, pillow, safetensors, accelerate and huggingface_hub are needed
# on the machine (the training below uses no kornia augmentation). The whole script ends within
# BUDGET_S seconds (default 540, for a 600 s call): the training gets what the benchmark and the tests
# leave, less 90 s for rendering the data and saving. TRAIN_ARGS are added to its flags. (No
# --fd_steps: FD-HDVILA loads hdvila-mini, whose text tower needs transformers and the MiniLM
# package; measure the returned generator here instead.)
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HDVILA_EXTENSIONS_DIR=/tmp/hdvila_ext
OUT="${OUT:?set OUT to a folder for the results}"
BUDGET_S="${BUDGET_S:-540}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/log.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/log.txt"

# 1. Generator speed at real resolutions, reference vs compiled ops (builds the CUDA ops with ninja;
#    rows print as measured, and every 60 s the Python stack goes to the log, so a stall is located).
timeout 180 python3 benchmarks/bench_stylegan2.py --device cuda --repeats 5 --watchdog 60 2>&1 | tee -a "$OUT/log.txt"

# 2. CUDA ops against the reference path (the tests marked for CUDA; the CUDA build is cached by now).
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_stylegan2_ops.py tests/test_stylegan2_networks.py \
    -k "cuda" 2>&1 | tee -a "$OUT/log.txt"

# 3. The demo generator. With a carried folder runs/gpu-init (a CPU checkpoint without its optimizer
#    files, see below) it goes on from there at R1 gamma 2 with the CPU run's width; otherwise a fresh
#    run at batch 32, 2 mapping layers, no path length or style mixing (NVlabs' cifar settings), R1
#    gamma 10 (the auto value, 0.026 here, collapses this flat-colour domain; see docs/results.md),
#    256 channels up to 32 px and 128 at 64 px. To carry the current CPU checkpoint (38 MB; the
#    travelling tree's limit is 64 MiB):
#        mkdir -p runs/gpu-init && cp -r runs/sg2-v7g2/checkpoint-N/{model.safetensors,model_1.safetensors,\
#            generator_ema,training_state.json} runs/gpu-init/
#        run(command="bash scripts/device_stylegan2.sh", carry=["runs/gpu-init"], timeout_s=600)
#    The final checkpoint comes back as $OUT/ckpt (no optimizer files): evaluate $OUT/ckpt/generator_ema
#    here, or go on here with --init_from. Without runs/gpu-init it goes on from the bundled
#    checkpoints/stylegan2-demo64 (generator + discriminator/), D alone for D_WARMUP steps (default
#    4000) first; FRESH=1 starts from scratch instead.
if [ -f runs/gpu-init/training_state.json ]; then
    # the carried run's own width (2048 to session 8, 4096 for the widened run of session 9)
    CB=$(python3 -c "import json; print(json.load(open('runs/gpu-init/training_state.json'))['model']['channel_base'])")
    MODEL_ARGS="--init_from runs/gpu-init --channel_base $CB --r1_gamma 2"
elif [ -z "${FRESH:-}" ]; then
    # the bundled generator and its discriminator (session 10: the D learns only with a small R1 gamma,
    # and G fine-tuned against a young D loses shapes, so D trains alone first and G moves slowly)
    CB=$(python3 -c "import json; print(json.load(open('checkpoints/stylegan2-demo64/config.json'))['channel_base'])")
    MODEL_ARGS="--init_from checkpoints/stylegan2-demo64 --channel_base $CB --r1_gamma 0.1 --d_lr 0.0025 \
        --learning_rate 0.0002 --d_warmup_steps ${D_WARMUP:-4000}"
else  # FRESH=1: a new run from scratch
    MODEL_ARGS="--channel_base 8192 --r1_gamma 10"
fi
TRAIN_S=$((BUDGET_S - SECONDS - 90))
[ "$TRAIN_S" -lt 30 ] && TRAIN_S=30
TRAIN_MINUTES=$(python3 -c "print($TRAIN_S / 60)")
echo "training for $TRAIN_S s (elapsed $SECONDS s)" | tee -a "$OUT/log.txt"
# shellcheck disable=SC2086
timeout $((TRAIN_S + 120)) python3 generation/train_stylegan2.py --data demo --resolution 64 \
    --train_size 8192 --z_dim 256 --w_dim 256 --mapping_layers 2 --channel_max 256 $MODEL_ARGS \
    --train_batch_size 32 --max_train_steps 1000000 --max_train_minutes "$TRAIN_MINUTES" --pl_weight 0 \
    --style_mixing_prob 0 --output_dir /tmp/sg2 --checkpointing_steps 1000000 --validation_steps 2000 \
    --report_to none ${TRAIN_ARGS:-} 2>&1 | tr '\r' '\n' | grep -v "it/s" | tee -a "$OUT/log.txt"
CKPT=$(ls -d /tmp/sg2/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1)
if [ -n "$CKPT" ]; then
    mkdir -p "$OUT/ckpt/generator_ema"
    cp "$CKPT"/model.safetensors "$CKPT"/model_1.safetensors "$CKPT"/training_state.json "$OUT/ckpt/"
    cp "$CKPT"/generator_ema/* "$OUT/ckpt/generator_ema/"
fi
ls /tmp/sg2/samples 2>/dev/null | tail -1 | xargs -I{} cp /tmp/sg2/samples/{} "$OUT/last_samples.png"
ls -la "$OUT" "$OUT/ckpt" 2>/dev/null
