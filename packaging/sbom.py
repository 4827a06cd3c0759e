#!/usr/bin/env python3
"""CycloneDX 1.5 SBOM of the release binary for one target, from `cargo metadata`.

Lists the crates linked into the binary: the normal (not dev, not build, not proc-macro)
dependency closure of the package, resolved for the target triple, with versions and purls.
Usage: sbom.py TARGET_TRIPLE OUT.json
"""
import json
import subprocess
import sys
import uuid

triple, out = sys.argv[1], sys.argv[2]
meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", triple]))
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = meta["resolve"]["root"]


def is_proc_macro(pid):
    return any("proc-macro" in t["kind"] for t in packages[pid]["targets"])


def normal_deps(node_id):
    # Proc-macro crates (and what only they use) run in the compiler; nothing of them is linked.
    for dep in nodes[node_id]["deps"]:
        if any(k["kind"] is None for k in dep["dep_kinds"]) and not is_proc_macro(dep["pkg"]):
            yield dep["pkg"]


seen, stack = set(), [root]
while stack:
    pid = stack.pop()
    if pid in seen:
        continue
    seen.add(pid)
    stack.extend(normal_deps(pid))


def component(pid):
    p = packages[pid]
    c = {"type": "library", "bom-ref": pid, "name": p["name"], "version": p["version"],
         "purl": f"pkg:cargo/{p['name']}@{p['version']}"}
    if p.get("license"):
        c["licenses"] = [{"expression": p["license"]}]
    return c


rootpkg = packages[root]
bom = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, rootpkg['name'] + rootpkg['version'] + triple)}",
    "version": 1,
    "metadata": {"component": dict(component(root), type="application"),
                 "properties": [{"name": "cdx:rust:target", "value": triple}]},
    "components": [component(pid) for pid in sorted(seen - {root}, key=lambda i: packages[i]["name"])],
    "dependencies": [{"ref": pid, "dependsOn": sorted(set(normal_deps(pid)))} for pid in sorted(seen)],
}
with open(out, "w") as f:
    json.dump(bom, f, indent=1)
print(f"{out}: {len(bom['components'])} crates")
