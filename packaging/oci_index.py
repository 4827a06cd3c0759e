#!/usr/bin/env python3
"""Multi-arch OCI image (an image index over linux/amd64 and linux/arm64) as an OCI image layout
tarball, built offline from the two static binaries: no registry, no emulation, no builder.

Each platform's image has one layer with exactly what packaging/image/Dockerfile puts in the
per-arch images (the binary, a CA bundle, /etc/passwd and /etc/group with uid/gid 10001, an empty
/tmp), the same user, entrypoint, environment and OCI labels. The layer is reproducible: fixed
mtimes and owners, sorted entries, gzip without a timestamp.

Usage: oci_index.py VERSION AMD64_BINARY ARM64_BINARY CA_BUNDLE OUT.tar
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

EPOCH = 0
SOURCE = "https://github.com/warpdotdev/oz-agent-worker"


def tar_bytes(entries):
    """entries: (path, mode, uid, gid, bytes-or-None for a directory), in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, mode, uid, gid, data in entries:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, EPOCH
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(blobs, data, media_type, **extra):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return dict({"mediaType": media_type, "digest": digest, "size": len(data)}, **extra)


def main():
    version, amd64, arm64, ca, out = sys.argv[1:6]
    image_dir = "packaging/image"
    passwd = open(f"{image_dir}/passwd", "rb").read()
    group = open(f"{image_dir}/group", "rb").read()
    cacert = open(ca, "rb").read()
    labels = {
        "org.opencontainers.image.title": "oz-agent-worker",
        "org.opencontainers.image.description": "Self-hosted worker for Oz cloud agents",
        "org.opencontainers.image.source": SOURCE,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    blobs, manifests = {}, []
    for arch, path in (("amd64", amd64), ("arm64", arm64)):
        layer_tar = tar_bytes([
            ("etc", 0o755, 0, 0, None),
            ("etc/group", 0o644, 0, 0, group),
            ("etc/passwd", 0o644, 0, 0, passwd),
            ("etc/ssl", 0o755, 0, 0, None),
            ("etc/ssl/certs", 0o755, 0, 0, None),
            ("etc/ssl/certs/ca-certificates.crt", 0o644, 0, 0, cacert),
            ("tmp", 0o1777, 10001, 10001, None),
            ("usr", 0o755, 0, 0, None),
            ("usr/bin", 0o755, 0, 0, None),
            ("usr/bin/oz-agent-worker", 0o755, 0, 0, open(path, "rb").read()),
        ])
        layer_gz = gzip.compress(layer_tar, compresslevel=9, mtime=EPOCH)
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {
                "User": "10001:10001",
                "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
                "Entrypoint": ["/usr/bin/oz-agent-worker"],
                "Labels": labels,
            },
            "rootfs": {"type": "layers",
                       "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
            "history": [{"created_by": "packaging/oci_index.py", "created": "1970-01-01T00:00:00Z"}],
        }
        config_desc = blob(blobs, json.dumps(config, sort_keys=True).encode(),
                           "application/vnd.oci.image.config.v1+json")
        layer_desc = blob(blobs, layer_gz, "application/vnd.oci.image.layer.v1.tar+gzip")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc], "annotations": labels}
        manifests.append(blob(blobs, json.dumps(manifest, sort_keys=True).encode(),
                              "application/vnd.oci.image.manifest.v1+json",
                              platform={"architecture": arch, "os": "linux"}))
    # The multi-arch image is an index blob; the layout's index.json names it by the version
    # (`oci-archive:FILE:VERSION`), as registries and tools expect of a tagged multi-arch image.
    image_index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests, "annotations": labels}
    index_desc = blob(blobs, json.dumps(image_index, sort_keys=True).encode(),
                      "application/vnd.oci.image.index.v1+json",
                      annotations={"org.opencontainers.image.ref.name": version})
    layout_index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [index_desc]}
    entries = [("oci-layout", 0o644, 0, 0, b'{"imageLayoutVersion":"1.0.0"}'),
               ("index.json", 0o644, 0, 0, json.dumps(layout_index, sort_keys=True).encode()),
               ("blobs", 0o755, 0, 0, None), ("blobs/sha256", 0o755, 0, 0, None)]
    for digest in sorted(blobs):
        entries.append((f"blobs/sha256/{digest[7:]}", 0o644, 0, 0, blobs[digest]))
    with open(out, "wb") as f:
        f.write(tar_bytes(entries))
    sizes = {m["platform"]["architecture"]: m for m in manifests}
    for arch in sizes:
        layer = json.loads(blobs[sizes[arch]["digest"]])["layers"][0]
        print(f"{out}: linux/{arch} layer {layer['size']} bytes (compressed)")


if __name__ == "__main__":
    main()
