#!/usr/bin/env bash
# Validates every manifest the Kubernetes backend can generate (task Jobs over a matrix of
# configurations, preflight Jobs, the Role, the access reviews) against the OpenAPI schemas of
# Kubernetes 1.30 up to the newest version kubernetes-validate (PyPI) knows, in strict mode:
# an unknown or misspelt field fails. The manifests come from the unit test
# backend::kubernetes::matrix, which writes them to one directory per oldest Kubernetes minor
# whose schema has every field they use (v1.30/, v1.31/ for image volumes).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/kubernetes-validate-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 needs the venv module as a package.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.30'
fi
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"

dir="$PWD/target/k8s-manifests"
rm -rf "$dir"
OZ_K8S_MANIFESTS="$dir" cargo test --locked --quiet --lib \
  backend::kubernetes::matrix::write_every_generated_manifest -- --exact >/dev/null

# Distinct major.minor versions the validator ships, from 1.30 on.
versions=$("$venv/bin/python" - <<'PY'
from kubernetes_validate.utils import all_versions
seen = sorted({tuple(int(p) for p in v.split(".")[:2]) for v in all_versions()})
print(" ".join(f"{a}.{b}" for a, b in seen if (a, b) >= (1, 30)))
PY
)
[ -n "$versions" ] || { echo "kubernetes-validate knows no Kubernetes >= 1.30" >&2; exit 1; }

# true when version $1 <= version $2
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }

failed=0
checked=0
for v in $versions; do
  files=()
  for d in "$dir"/v*; do
    min=${d##*/v}
    if version_le "$min" "$v"; then
      files+=("$d"/*.json)
    fi
  done
  [ "${#files[@]}" -gt 0 ] || { echo "no manifests were written to $dir" >&2; exit 1; }
  # kubernetes-validate only warns (exit 0) when it has no schema for a kind: treat any
  # warning as a failure, or a misspelt kind would pass unchecked.
  if ! out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${files[@]}" 2>&1) \
     || [ -n "$out" ]; then
    echo "Kubernetes $v:" >&2
    echo "$out" >&2
    failed=1
  fi
  checked=$((checked + ${#files[@]}))
  echo "Kubernetes $v: ${#files[@]} manifests"
done
[ "$failed" -eq 0 ] || { echo "generated Kubernetes manifests failed validation" >&2; exit 1; }
echo "all generated Kubernetes manifests are valid ($checked checks over Kubernetes ${versions// /, })"
