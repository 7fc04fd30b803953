#!/usr/bin/env bash
# The GPU check kit: measures the engine on whatever GPU this machine has, in one run, and times the
# official FOMM code on the same card right after where PyTorch sees CUDA.
#
#   tests/scripts/gpu-check.sh BIN [--quick] [--no-train] [--fomm DIR] [--out DIR]
#
# BIN: a `prioritycut` binary; on a machine without Rust, the headless one that
#   tests/scripts/gpu-kit.sh builds (no window, no FFmpeg: it needs only glibc and a Vulkan loader).
# --quick: small models and few runs (a software adapter such as llvmpipe; a smoke test).
# --no-train: skip bench train (3 of the 6 minutes on an H200).
# --fomm DIR: the official FOMM code (its modules/, sync_batchnorm/, config/vox-256.yaml), timed
#   with tests/scripts/time_fomm_gpu.py on CUDA when `python3 -c "import torch"` sees a GPU.
# --out DIR: where each step's full output and the summary table go (default: a temp folder).
#
# Run from the repository root. It names the adapter (or says why wgpu found none), runs
# verify-reference on wgpu on every fixture, bench animate (source once, then --cold, then with
# burn's own kernels instead of ours, then our 3×3 convolutions by unfold + matmul, then in f16
# where the adapter has SHADER_F16), bench live
# (a clip as the camera), bench train (batch 8 at 64x64, batch 4 at 256x256 with our kernels and
# with burn's), then PyTorch, and
# prints one table. Every step has a time limit; a failed step is a row of the table, not the end.
# On an H200 the whole run took 6 minutes (3 of them bench train's first steps compiling and
# autotuning): CubeCL's autotune level is `minimal` unless CUBECL_AUTOTUNE_LEVEL says otherwise.
#
# What travels to a GPU machine, within the device tool's 64 MiB: the tracked tree (~29 MiB, the
# fixtures and assets this script uses), the compressed binary (<= 25 MB), Vulkan's loader
# (~1 MiB of .debs) and the official FOMM code (~0.2 MiB without its images). Keep new fixtures
# small.
set -uo pipefail

usage() {
  sed -n '5,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 1 ] || usage
BIN=$1
shift
QUICK=0
NO_TRAIN=0
FOMM=""
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-train) NO_TRAIN=1 ;;
    --fomm) FOMM=${2:?--fomm needs a folder}; shift ;;
    --out) OUT=${2:?--out needs a folder}; shift ;;
    *) usage ;;
  esac
  shift
done
[ -x "$BIN" ] || { echo "gpu-check: $BIN is not an executable" >&2; exit 2; }
[ -d tests/fixtures ] || { echo "gpu-check: run from the repository root" >&2; exit 2; }
OUT=${OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.tsv"
: >"$SUMMARY"
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
FAILED=0

# row CHECK RESULT FIGURE
row() {
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$SUMMARY"
}

# step NAME SECONDS COMMAND...: runs it with a limit, its output in $OUT/NAME.log; returns its status.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" >&2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  echo "   exit $status after $((SECONDS - start)) s" >&2
  [ $status -eq 124 ] && echo "   (stopped at its ${limit} s limit)" >>"$OUT/$name.log"
  return $status
}

# field FILE REGEX: the first capture group of the first line of the result matching REGEX.
field() {
  sed -nE "s#.*$2.*#\\1#p" "$1" | head -n 1
}

fail_row() {
  FAILED=1
  row "$1" "FAILED (exit $2)" "$(grep -E '^error: |panicked|stopped at' "$OUT/$3.log" | grep -v XDG_RUNTIME_DIR | head -n 1 | cut -c1-100)"
}

# --- The adapter -----------------------------------------------------------------------------
echo "machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores" >&2
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/nvidia-smi.log" 2>&1
  row "GPU (nvidia-smi)" "$(head -n 1 "$OUT/nvidia-smi.log")" ""
fi
step devices 60 "$BIN" devices
ADAPTER=$(sed -nE 's/^adapter 0: (.*) \(--backend wgpu:0\)$/\1/p' "$OUT/devices.log" | head -n 1)
if [ -z "$ADAPTER" ]; then
  why="wgpu found no adapter"
  if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
    why="$why: no Vulkan loader (libvulkan.so.1; carry it: see the device tool's README)"
  else
    icds=$(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d 2>/dev/null | grep -c json)
    if [ "$icds" = 0 ] && [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
      why="$why: a Vulkan loader but no driver manifest (ICD): set VK_DRIVER_FILES to the GPU driver's icd.d json"
    else
      why="$why, though a Vulkan loader and a driver manifest are there (see $OUT/devices.log)"
    fi
  fi
  row "adapter" "NONE" "$why"
  FAILED=1
else
  row "adapter" "$(echo "$ADAPTER" | cut -d'|' -f1-3 | xargs)" "$(echo "$ADAPTER" | cut -d'|' -f4- | xargs)"
fi

# --- Parity on wgpu ----------------------------------------------------------------------------
for fixture in tests/fixtures/*/; do
  # Reference fixtures: an official checkpoint and its outputs (fomm-train is a training step's).
  [ -f "$fixture/checkpoint.pth.tar" ] && [ -f "$fixture/animate_prediction.npy" ] || continue
  name=verify-$(basename "$fixture")
  if step "$name" 180 "$BIN" verify-reference "$fixture" --backend wgpu; then
    row "$name" "PASS" "$(field "$OUT/$name.log" 'PASS: (.*)')"
  else
    fail_row "$name" $? "$name"
  fi
done

# --- Speed ------------------------------------------------------------------------------------
if [ $QUICK = 1 ]; then
  SMALL=(--config tests/fixtures/fomm-small/config.yaml)
  ANIMATE=("${SMALL[@]}" --runs 2 --warmup 1)
  LIVE=("${SMALL[@]}" --seconds 3)
  TRAIN_64=("${SMALL[@]}" --batch 1 --runs 1 --warmup 0 --pixel-loss)
  TRAIN_256=()
  TORCH=(3 1)
  # llvmpipe compiles a training step's kernels for ~7 minutes on 2 cores before the first step.
  TRAIN_LIMIT=900
else
  ANIMATE=(--runs 20 --warmup 5)
  LIVE=(--seconds 10)
  TRAIN_64=(--config assets/configs/synthetic-64.yaml --batch 8 --runs 3 --warmup 2)
  TRAIN_256=(--batch 4 --runs 3 --warmup 2)
  TORCH=(50 10)
  TRAIN_LIMIT=400
fi

animate_row() { # NAME
  local log="$OUT/$1.log"
  local stalls
  stalls=$(field "$log" ', ([0-9]+ of [0-9]+ runs over twice the median)')
  row "$1" "$(field "$log" ' ([0-9.]+) ms/frame median') ms median ($(field "$log" '\(([0-9.]+) frames/s\) \| mean') f/s), mean $(field "$log" 'mean ([0-9.]+) ms/frame') ms" \
    "$(field "$log" '\| ([0-9]+ kernel launches/frame)'); $(field "$log" '\| ([0-9.]+ MB/frame) logical'); waiting for the device $(field "$log" 'waiting for the device ([0-9.]+ ms)')${stalls:+; $stalls}"
}
if step animate 300 "$BIN" bench animate --backend wgpu "${ANIMATE[@]}"; then
  animate_row animate
  # A frame read back without waiting must be the frame just computed (see bench animate).
  check=$(field "$OUT/animate.log" 'read-back check: ([A-Za-z]+)')
  [ "$check" = PASS ] || FAILED=1
  row "read-back check" "${check:-not run}" "$(field "$OUT/animate.log" 'read-back check: [A-Za-z]+ \(([^)]*)\)' | cut -c1-100)"
else
  fail_row animate $? animate
fi
if step animate-cold 300 "$BIN" bench animate --backend wgpu --cold "${ANIMATE[@]}"; then animate_row animate-cold; else fail_row animate-cold $? animate-cold; fi
# burn's own kernels (its direct convolution): what ours are measured against, on the same card.
if step animate-burn-kernels 300 "$BIN" bench animate --backend wgpu --gpu-kernels burn "${ANIMATE[@]}"; then
  animate_row animate-burn-kernels
else
  fail_row animate-burn-kernels $? animate-burn-kernels
fi
# Our 3×3 convolutions by unfold + matmul instead of Winograd's F(4×4, 3×3): what Winograd gains.
if step animate-unfold-only 300 "$BIN" bench animate --backend wgpu --gpu-kernels unfold "${ANIMATE[@]}"; then
  animate_row animate-unfold-only
else
  fail_row animate-unfold-only $? animate-unfold-only
fi
# The model stored in f16 where the adapter computes in it (README, "Precision"): what half the
# bytes gain.
if echo "$ADAPTER" | grep -q '| f16 yes |'; then
  if step animate-f16 300 "$BIN" bench animate --backend wgpu --precision f16 "${ANIMATE[@]}"; then
    animate_row animate-f16
  else
    fail_row animate-f16 $? animate-f16
  fi
else
  row animate-f16 "not run" "the adapter has no SHADER_F16"
fi

# --- The official code on the same card, right after ours ---------------------------------------
if [ -n "$FOMM" ] && [ $QUICK = 0 ] && python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  if step torch 240 python3 tests/scripts/time_fomm_gpu.py "$FOMM" "${TORCH[@]}"; then
    row "official FOMM, PyTorch CUDA" "$(field "$OUT/torch.log" 'official animation frame ms: ([0-9.]+)') ms/frame ($(field "$OUT/torch.log" '\(([0-9.]+) frames/s') frames/s)" \
      "$(field "$OUT/torch.log" '(cuDNN TF32 [A-Za-z]+)')"
  else
    fail_row "official FOMM, PyTorch CUDA" $? torch
  fi
elif [ -n "$FOMM" ]; then
  row "official FOMM, PyTorch CUDA" "skipped" "no CUDA in python3's torch (or --quick)"
fi

if step live 240 "$BIN" bench live --backend wgpu "${LIVE[@]}"; then
  row live "$(field "$OUT/live.log" ' ([0-9.]+ frames/s) over') (camera 30 fps)" \
    "latency median $(field "$OUT/live.log" 'latency median ([0-9]+ ms)'); $(field "$OUT/live.log" ' ([0-9]+ camera frames dropped)')"
else
  fail_row live $? live
fi

train_row() { # NAME
  local log="$OUT/$1.log"
  row "$1" "$(field "$log" ' ([0-9]+) ms/step median') ms/step, $(field "$log" ' ([0-9]+x[0-9]+ batch [0-9]+)')" \
    "$(field "$log" '\| ([0-9]+ kernel launches/step)')"
}
if [ $NO_TRAIN = 1 ]; then
  row "bench train" "skipped" "--no-train"
else
  if step train-64 "$TRAIN_LIMIT" "$BIN" bench train --backend wgpu "${TRAIN_64[@]}"; then train_row train-64; else fail_row train-64 $? train-64; fi
  if [ ${#TRAIN_256[@]} -gt 0 ]; then
    if step train-256 "$TRAIN_LIMIT" "$BIN" bench train --backend wgpu "${TRAIN_256[@]}"; then train_row train-256; else fail_row train-256 $? train-256; fi
    # The same step with burn's kernels (its convolutions and their backward), for the ratio.
    if step train-256-burn-kernels "$TRAIN_LIMIT" "$BIN" bench train --backend wgpu --gpu-kernels burn "${TRAIN_256[@]}"; then
      train_row train-256-burn-kernels
    else
      fail_row train-256-burn-kernels $? train-256-burn-kernels
    fi
  fi
fi

# --- The table --------------------------------------------------------------------------------
echo
echo "GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $("$BIN" --version 2>/dev/null), CUBECL_AUTOTUNE_LEVEL=$CUBECL_AUTOTUNE_LEVEL$([ $QUICK = 1 ] && echo ', --quick sizes')"
printf '%-30s | %-44s | %s\n' check result detail
printf '%s\n' "-------------------------------+----------------------------------------------+------------------------"
while IFS=$'\t' read -r check result detail; do
  printf '%-30s | %-44s | %s\n' "$check" "$result" "$detail"
done <"$SUMMARY"
echo "(each step's output: $OUT)"
exit $FAILED
