#!/usr/bin/env bash
# Screenshots of each workspace in a real window under Xvfb (software Vulkan when there is no GPU),
# for a person to look at. Not part of the test run; the PNGs are not committed.
#   bash tests/scripts/screenshots.sh [OUT_DIR]     (needs: apt-get install xvfb xauth)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/screenshots}"
mkdir -p "$out"
bin=target/release/prioritycut
cargo build --release --bin prioritycut

# A small synthetic dataset for the Train and Evaluate workspaces.
data="$out/figures"
[ -d "$data/train" ] || "$bin" make-dataset --synthetic "$data" --size 64 --train-videos 4 --test-videos 3 --frames 12
rm -rf "$out/run"
# The bundled driving clip stands in for a camera (any video the engine reads does).
camera=assets/sample/driving.gif

shot() {
  local name="$1"; shift
  xvfb-run -a -s "-screen 0 1280x800x24" "$bin" --fresh --screenshot "$out/$name.png" "$@"
}
shot animate --workspace animate --screenshot-after 25
shot train --workspace train --train-dataset "$data" --train-run "$out/run" --screenshot-after 60
shot live --workspace live --live-video "$camera" --screenshot-after 30
shot evaluate --workspace evaluate --evaluate-dataset "$data" --screenshot-after 30
ls -l "$out"/*.png
