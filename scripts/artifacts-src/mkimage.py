"""Write a one-layer container image as a tarball that `ctr images import` and `docker load` accept.

usage: mkimage.py --name REF --out FILE --entrypoint PATH [--arg A ...] [--user U] [--port N]
                  [--env K=V ...] [--label K=V ...] (--file SRC:DEST[:MODE] ... | --rootfs TAR)

--rootfs takes a whole root filesystem tarball (mmdebstrap's, say) as the one layer, as it is.

The tarball is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that also carries
Docker's manifest.json pointing at the same blobs, as `docker save` writes since Docker 25: tools
that read either format find the image and its name. No daemon, no registry. Byte-for-byte
reproducible: fixed timestamps, owners and ordering.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Blob:
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def path(self) -> str:
        return "blobs/sha256/" + self.digest.split(":", 1)[1]

    def descriptor(self, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": self.digest, "size": len(self.data)}


def tar_info(name: str, size: int = 0, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, mode, kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def layer_tar(files: list[tuple[Path, str, int]]) -> bytes:
    """The root filesystem: the given files plus the folders above them, and an empty /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {"tmp"}
        for _, dest, _ in files:
            parts = dest.strip("/").split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for d in sorted(dirs):
            tar.addfile(tar_info(d + "/", mode=0o1777 if d == "tmp" else 0o755, kind=tarfile.DIRTYPE))
        for src, dest, mode in sorted(files, key=lambda f: f[1]):
            data = src.read_bytes()
            tar.addfile(tar_info(dest.strip("/"), len(data), mode), io.BytesIO(data))
    return buf.getvalue()


def build(args: argparse.Namespace) -> None:
    files = []
    for spec in args.file or []:
        src, dest, *mode = spec.split(":")
        files.append((Path(src), dest, int(mode[0], 8) if mode else 0o755))
    # a root filesystem of a few hundred MB: level 6 is a third of level 9's time for ~2 % more
    raw = Path(args.rootfs).read_bytes() if args.rootfs else layer_tar(files)
    layer = Blob(gzip.compress(raw, compresslevel=6 if args.rootfs else 9, mtime=0))
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()

    env = args.env or ["PATH=/"]
    config_body: dict[str, object] = {"Entrypoint": [args.entrypoint, *(args.arg or [])], "Env": env}
    if args.user:
        config_body["User"] = args.user
    if args.port:
        config_body["ExposedPorts"] = {f"{p}/tcp": {} for p in args.port}
    if args.label:
        config_body["Labels"] = dict(label.split("=", 1) for label in args.label)
    config = Blob(json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": config_body,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "hzcloud scripts/build-images"}],
    }, sort_keys=True, separators=(",", ":")).encode())
    manifest = Blob(json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(OCI_CONFIG),
        "layers": [layer.descriptor(OCI_LAYER_GZIP)],
    }, sort_keys=True, separators=(",", ":")).encode())
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            **manifest.descriptor(OCI_MANIFEST),
            "annotations": {
                "io.containerd.image.name": args.name,
                "org.opencontainers.image.ref.name": tag,
            },
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }
    docker_manifest = [{"Config": config.path, "RepoTags": [args.name], "Layers": [layer.path]}]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name("." + out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tar_info("blobs/", mode=0o755, kind=tarfile.DIRTYPE))
        tar.addfile(tar_info("blobs/sha256/", mode=0o755, kind=tarfile.DIRTYPE))
        members = [(b.path, b.data) for b in (config, layer, manifest)]
        members += [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", json.dumps(index, sort_keys=True).encode()),
            ("manifest.json", json.dumps(docker_manifest).encode()),
        ]
        for name, data in members:
            tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="image reference, e.g. hzcloud.local/pause:3.10.2")
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", required=True)
    parser.add_argument("--user")
    parser.add_argument("--port", type=int, action="append")
    parser.add_argument("--label", action="append")
    parser.add_argument("--arg", action="append", help="an argument after the entrypoint")
    parser.add_argument("--env", action="append", help="K=V (default: PATH=/)")
    files = parser.add_mutually_exclusive_group(required=True)
    files.add_argument("--file", action="append", help="SRC:DEST[:MODE]")
    files.add_argument("--rootfs", help="a root filesystem tarball, taken as the one layer")
    build(parser.parse_args())


if __name__ == "__main__":
    main()
