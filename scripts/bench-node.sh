#!/usr/bin/env bash
# Runs the benchmark on another Node.js major version: `bash scripts/bench-node.sh 24 [options]`,
# the options those of `npm run bench` (its results go to bench/results/node-<major>/ unless
# --out is given, and BENCHMARKS.md is left alone unless --docs is given). The servers and the
# load generator are started with the same Node as the run.
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: bench-node.sh <major version, e.g. 24> [npm run bench options]}"
# shellcheck source=scripts/other-node.sh
source scripts/other-node.sh

args=("${@:2}")
case " ${args[*]-} " in *" --out="*) ;; *) args+=("--out=bench/results/node-$major") ;; esac
case " ${args[*]-} " in *" --docs "* | *" --no-docs "*) ;; *) args+=("--no-docs") ;; esac
echo "Benchmarking on Node $version..."
PATH="$node_dir/bin:$PATH" "$node_bin" node_modules/tsx/dist/cli.mjs bench/run.ts "${args[@]}"
