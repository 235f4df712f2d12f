#!/usr/bin/env bash
# Refreshes the README's picture (docs/demo.png) on purpose: runs the browser test with the
# demo on its documented ports (app 5173, agents 8787), so the picture shows the URLs the
# docs give, and writes the screenshot there instead of test-results/.
# `npm test` never touches docs/demo.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-browser.sh
OUTPOST_DEMO_APP_PORT=5173 OUTPOST_DEMO_AGENT_PORT=8787 \
  OUTPOST_DEMO_SCREENSHOT="$PWD/docs/demo.png" \
  npx vitest run test/e2e/demo.test.ts
echo "docs/demo.png refreshed; review it with git diff --stat docs/demo.png before committing."
