#!/usr/bin/env bash
# Packs what a GPU machine without Rust needs to run tests/scripts/gpu-check.sh, into folders that
# git ignores (.gpu-kit/ and .gl/), so that they travel beside the tracked tree:
#
#   tests/scripts/gpu-kit.sh [--fomm FOMM_CHECKOUT]
#
# - .gpu-kit/prioritycut.xz: the headless build (`--no-default-features`: no window, no FFmpeg),
#   stripped and xz-compressed (<= 25 MB). It shares the default build's compiled burn (the
#   feature pins in Cargo.toml), so after `bash app/dev.sh test` it takes a few minutes.
# - .gl/*.deb: Vulkan's loader (libvulkan1) and the GL/EGL dispatch libraries, for a machine that
#   has the GPU driver but not the loader.
# - .gpu-kit/fomm/: the official FOMM code's modules/, sync_batchnorm/ and config/vox-256.yaml from
#   FOMM_CHECKOUT (a checkout of the official repository; nothing of it is committed here).
#
# On the GPU machine (the device tool: carry .gpu-kit and .gl), from the repository root:
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
#   xz -dc .gpu-kit/prioritycut.xz > /tmp/prioritycut && chmod +x /tmp/prioritycut
#   bash tests/scripts/gpu-check.sh /tmp/prioritycut --fomm .gpu-kit/fomm --out $OUT
set -euo pipefail
cd "$(dirname "$0")/../.."

FOMM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --fomm) FOMM=${2:?--fomm needs the official FOMM checkout}; shift ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  shift
done

for ignored in /.gpu-kit/ /.gl/; do
  grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >>.git/info/exclude
done
mkdir -p .gpu-kit

cargo build --release --no-default-features --bin prioritycut
strip -o .gpu-kit/prioritycut target/release/prioritycut
if ldd .gpu-kit/prioritycut | grep -E 'libav|libsw|libX|libwayland'; then
  echo "gpu-kit: the headless binary links the libraries above; it would not run on a bare machine" >&2
  exit 1
fi
xz -T0 -9 -f .gpu-kit/prioritycut
size=$(stat -c %s .gpu-kit/prioritycut.xz)
echo "gpu-kit: .gpu-kit/prioritycut.xz: $((size / 1000000)) MB (limit 25 MB)"
[ "$size" -le 25000000 ] || { echo "gpu-kit: the compressed binary is over 25 MB" >&2; exit 1; }

if [ ! -d .gl ] || ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  apt_amd64=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${apt_amd64[@]}" update -qq
  (cd .gl && apt-get "${apt_amd64[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

if [ -n "$FOMM" ]; then
  [ -f "$FOMM/config/vox-256.yaml" ] && [ -d "$FOMM/modules" ] || {
    echo "gpu-kit: $FOMM is not the official FOMM code (no modules/ or config/vox-256.yaml)" >&2
    exit 1
  }
  rm -rf .gpu-kit/fomm
  mkdir -p .gpu-kit/fomm/config
  cp -r "$FOMM/modules" "$FOMM/sync_batchnorm" .gpu-kit/fomm/
  cp "$FOMM/config/vox-256.yaml" .gpu-kit/fomm/config/
fi

tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
kit=$(du -cb .gpu-kit .gl | tail -n 1 | cut -f1)
echo "gpu-kit: what travels: tracked tree $((tracked / 1048576)) MiB + kit $((kit / 1048576)) MiB = $(((tracked + kit) / 1048576)) MiB (limit 64 MiB)"
[ $((tracked + kit)) -le $((64 * 1048576)) ] || { echo "gpu-kit: over the 64 MiB that travel" >&2; exit 1; }
