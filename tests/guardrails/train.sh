#!/usr/bin/env bash
# Retrain the shipped injection model (policies/guardrails/injection.model)
# from the evaluation packages' training splits; the same data and options
# give the same bytes.
#
#   bash tests/guardrails/train.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="$(bash "$repo/tests/guardrails/install.sh" | tail -n1)"
cd "$repo"
cargo run --release --quiet -- guardrails train \
  "$data/slabs-train.jsonl" "$data/core-train.jsonl" \
  "$data/agentdojo-train.jsonl" "$data/prose-train.jsonl" \
  "$data/messages-train.jsonl" \
  --window 64 --grams 32 --epochs 8 --seed 15 \
  --out policies/guardrails/injection.model
