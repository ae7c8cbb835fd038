#!/usr/bin/env bash
# The GPU measurements of the performance issue, as one script for a lent GPU machine (about 8 minutes on one
# H100): the step overhead of ResNet-50 DeCUR at the paper's SSL4EO-S12 shape (bf16, channels_last, with and
# without torch.compile), then end-to-end pretraining from the packed format with 12 loader workers, then the
# transfer step (ResNet-50, BigEarthNet shape, batch 256) and feature extraction, then the CMX-B2 training step,
# then the ViT-S/16 DeCUR step at the DeCUR code base's shape (224 px, batch 256, projector 8192^3, AdamW, bf16).
# Results: benchmarks/results/step_overhead-cuda-*.{json,md}, e2e_packed-cuda.{json,md}, transfer-cuda-*.{json,md},
# cmx-cuda-b2-bf16.{json,md}, step_overhead-cuda-vit_s16-bf16.{json,md}.
#   bash benchmarks/gpu.sh [PEAK_TFLOPS]      # default 989 (H100 SXM dense bf16); H200 has the same peak
set -euo pipefail
PEAK=${1:-989}
PY=${PYTHON:-.venv/bin/python}
SHAPE=(model.arch=resnet50 data.image_size=264 data.crop_size=224 data.batch_size=256
       'model.projector=[8192, 8192, 8192]' model.channels_last=true)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
$PY benchmarks/step_overhead.py --device cuda --precision bf16 --set "${SHAPE[@]}" --peak-tflops "$PEAK" \
    --repeats 10 --tag resnet50-bf16
$PY benchmarks/step_overhead.py --device cuda --precision bf16 --compile --set "${SHAPE[@]}" \
    --peak-tflops "$PEAK" --repeats 10 --tag resnet50-bf16-compile
$PY benchmarks/e2e_packed.py --locations 2048 --epochs 3 --workers 12 --peak-tflops "$PEAK"
# transfer: BigEarthNet-shaped fine-tuning step vs bare backbones, and linear probing's feature extraction
$PY benchmarks/transfer_throughput.py --device cuda --precision bf16 --channels-last --arch resnet50 --batch 256 \
    --repeats 10 --tag resnet50-bf16
# CMX-B2 training step at the paper's SUN-RGBD setting (batch 8 on one GPU, 480 x 480 crops, bf16): samples/s,
# MFU and the split encoders / rectification + fusion / decoder
$PY benchmarks/cmx_step.py --device cuda --precision bf16 --arch mit_b2 --batch 8 --height 480 --width 480 \
    --warmup 3 --repeats 10 --peak-tflops "$PEAK" --tag b2-bf16
# ViT-S/16 DeCUR step vs the bare encoders (target ratio >= 0.90), samples/s and MFU
$PY benchmarks/step_overhead.py --device cuda --precision bf16 --set model.arch=vit_small_patch16_224 \
    data.image_size=264 data.crop_size=224 data.batch_size=256 'model.projector=[8192, 8192, 8192]' \
    optim.name=adamw --peak-tflops "$PEAK" --repeats 10 --tag vit_s16-bf16
