#!/usr/bin/env bash
# README's two commands: `bash app/dev.sh run` opens the window on the bundled sample,
# `bash app/dev.sh test` runs every test. Each first installs what a fresh Debian/Ubuntu machine
# lacks (as root, or through sudo), then builds with the one profile and feature set the project
# uses, so that running and testing share one build of burn.
set -euo pipefail
cd "$(dirname "$0")/.."

# build-essential, pkg-config: building. clang, libclang-dev: bindgen for the FFmpeg and V4L2
# bindings (the V4L2 headers come with linux-libc-dev). libav*-dev, libswscale-dev: video decode
# and the H.264 encoder. mesa-vulkan-drivers, libvulkan1: wgpu without a GPU (llvmpipe), for the
# window and the engine's wgpu backend. libxkbcommon* and the X11 libraries: what winit loads at
# run time for an X11 window.
PACKAGES=(build-essential pkg-config clang libclang-dev
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
  mesa-vulkan-drivers libvulkan1 libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxrandr2 libxi6)

install_system_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "dev.sh: not a Debian/Ubuntu machine; install these (or your system's equivalents) yourself:" >&2
    echo "  a C toolchain, pkg-config, libclang, FFmpeg's development libraries (avformat, avcodec," >&2
    echo "  avutil, swscale) and a Vulkan, Metal or DX12 driver (macOS: brew install ffmpeg pkg-config llvm)" >&2
    return 0
  fi
  local missing=()
  for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "dev.sh: missing system packages and no sudo; as root run:" >&2
      echo "  apt-get install ${missing[*]}" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "dev.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "dev.sh: Rust is needed: install rustup (https://rustup.rs), which brings cargo 1.95 or newer" >&2
  exit 1
fi

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  run)
    install_system_packages
    exec cargo run --release -- "$@"
    ;;
  test)
    install_system_packages
    exec cargo test --release --workspace "$@"
    ;;
  *)
    echo "usage: bash app/dev.sh run [APP ARGS]   (the window on the bundled sample)" >&2
    echo "       bash app/dev.sh test [TEST ARGS]  (every test)" >&2
    exit 2
    ;;
esac
