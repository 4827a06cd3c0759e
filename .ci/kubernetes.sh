#!/usr/bin/env bash
# Kubernetes backend CI steps: the real kubectl (Debian's kubernetes-client) that checks the
# test suite's Kubernetes API simulator speaks the real wire format.
set -euo pipefail
if ! command -v kubectl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
# sed reads all of it: with pipefail, `head -1` could end kubectl with SIGPIPE and fail CI.
kubectl version --client 2>/dev/null | sed -n 1p
