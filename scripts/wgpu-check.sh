#!/usr/bin/env bash
# Backend-swap check: builds the workspace with `--features wgpu` and runs the backend-equivalence
# test (the same computations on NdArray and on wgpu must agree within f32 tolerance).
#
# On a machine without a GPU, wgpu runs on Mesa's software Vulkan driver (lavapipe), installed
# here from Debian's packages. A clean `--features wgpu` release build takes 10–25 minutes on
# 2 cores, so this lives outside .ci/run; run it before resolving an issue that touches
# backend-specific code. The same test compares Flex with NdArray, and the `cuda` feature is
# type-checked, so every feature a user may pick builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/score-sde-target}"

if ! ldconfig -p | grep -q libvulkan.so.1 || [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && [ ! -e /usr/share/vulkan/icd.d/lvp_icd.json ]; then
  echo "== installing Mesa's Vulkan drivers (lavapipe)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

echo "== type-checking the cuda feature (running it needs an NVIDIA GPU)"
cargo check --no-default-features --features cuda --lib

echo "== building and running the backend-equivalence test on flex and wgpu"
cargo test --release --features flex,wgpu --test backend_equivalence -- --nocapture --test-threads 1
