"""Read and update artifacts/manifest.json for scripts/build-artifacts and scripts/build-images.

usage:
  manifest.py check  MANIFEST VERSION RECIPE NAME...  exit 0 when every NAME is recorded with that
                                                      version and recipe and its file still has the
                                                      recorded sha256
  manifest.py record MANIFEST NAME VERSION RECIPE KIND PATH SOURCE [SECONDS]

PATH is relative to the manifest's folder. The manifest is the same file a hospital receives with
release downloads, so it only holds facts about the files: name, version, sha256, size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(manifest: Path) -> dict[str, Any]:
    if manifest.exists():
        data: dict[str, Any] = json.loads(manifest.read_text())
        return data
    return {"schema": 1, "artifacts": []}


def find(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    for entry in data["artifacts"]:
        if entry["name"] == name:
            return entry  # type: ignore[no-any-return]
    return None


def stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def check(manifest: Path, name: str, version: str, recipe: str) -> int:
    entry = find(load(manifest), name)
    if entry is None or entry.get("version") != version or entry.get("recipe") != recipe:
        return 1
    path = manifest.parent / entry["path"]
    if not path.is_file() or path.stat().st_size != entry["size"]:
        return 1
    # Hashing ~700 MB of binaries on every run is the slow part of a no-op run: remember the
    # (size, mtime, inode) of files already verified, in a side file that is not shipped.
    stamps_file = manifest.parent / ".verified.json"
    stamps = json.loads(stamps_file.read_text()) if stamps_file.exists() else {}
    if stamps.get(entry["path"]) == [stamp(path), entry["sha256"]]:
        return 0
    if sha256_of(path) != entry["sha256"]:
        return 1
    stamps[entry["path"]] = [stamp(path), entry["sha256"]]
    stamps_file.write_text(json.dumps(stamps, indent=1) + "\n")
    return 0


def record(manifest: Path, name: str, version: str, recipe: str, kind: str, rel: str,
           source: str, seconds: str | None) -> int:
    data = load(manifest)
    path = manifest.parent / rel
    entry = {
        "name": name,
        "kind": kind,
        "version": version,
        "path": rel,
        "sha256": sha256_of(path),
        "size": path.stat().st_size,
        "source": source,
        "recipe": recipe,
    }
    if seconds is not None:
        entry["build_seconds"] = int(float(seconds))
    data["artifacts"] = [e for e in data["artifacts"] if e["name"] != name] + [entry]
    data["artifacts"].sort(key=lambda e: (e["kind"], e["name"]))
    fd, tmp = tempfile.mkstemp(dir=manifest.parent, prefix=".manifest.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, manifest)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 6 and argv[1] == "check":
        return max(check(Path(argv[2]), name, argv[3], argv[4]) for name in argv[5:])
    if len(argv) in (9, 10) and argv[1] == "record":
        return record(Path(argv[2]), argv[3], argv[4], argv[5], argv[6], argv[7], argv[8],
                      argv[9] if len(argv) == 10 else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
