#!/usr/bin/env bash
# Installs Debian's nginx for the cluster's load-balancer test when it is missing.
# Only the binary is needed: the test writes its own config and runs nginx itself, so the
# packaged service is kept from starting (it would take port 80).
set -euo pipefail
if [ -x /usr/sbin/nginx ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "nginx is missing: run 'sudo apt-get install -y nginx' for the load-balancer test." >&2
  exit 1
fi
echo "Installing Debian's nginx for the load-balancer test..."
apt-get update -qq
# A policy-rc.d that exits 101 tells Debian's maintainer scripts not to start services;
# one the machine already has is left as it is.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
