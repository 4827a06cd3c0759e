#!/usr/bin/env bash
# What the tests of issue 8 need besides .ci/run's packages: prlimit(1) from util-linux (the
# resource-limit tests lower RLIMIT_NOFILE/RLIMIT_NPROC of a running worker) and gcc (the static
# C stand-in agent). The RLIMIT_NPROC test also needs root, which CI has.
set -euo pipefail
need=()
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
