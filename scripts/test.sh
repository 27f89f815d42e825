#!/usr/bin/env bash
# Runs every test: unit tests, model/gradient tests, end-to-end training on the built-in
# model, the CLI, and the GUI driven headless (egui_kittest on Mesa's software Vulkan).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
