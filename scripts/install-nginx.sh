#!/usr/bin/env bash
# Installs Debian's nginx for the load-balancer tests and `npm run cluster` when it is missing.
set -euo pipefail
if [ -x /usr/sbin/nginx ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "nginx is missing: run 'sudo apt-get install -y nginx' for the load-balancer tests." >&2
  exit 1
fi
echo "Installing Debian's nginx for the load-balancer tests..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
# The package starts a system nginx on port 80 where it can; the tests start their own.
if command -v service >/dev/null && service nginx status >/dev/null 2>&1; then service nginx stop || true; fi
