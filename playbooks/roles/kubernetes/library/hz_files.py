#!/usr/bin/python3
"""Ansible module: many small files on a node in one call (the kubernetes role's configuration)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hz_files
short_description: Ensure many small files have the given content, owner and mode, in one call
description:
  - One module call per node instead of one per file (each round trip costs ~0.5-2 s on a busy
    control node). Writes atomically (temporary file, then rename) only the files that differ.
  - Reports the files it changed and the union of their C(units), for the caller to restart.
options:
  dirs:
    description: Directories to ensure first (path, mode; owned by root).
    type: list
    elements: dict
    default: []
  files:
    description: Files (path, content, mode, units); owned by root.
    type: list
    elements: dict
    required: true
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _differs(path: str, data: bytes, mode: int) -> bool:
    try:
        st = os.stat(path)
        if st.st_uid != 0 or st.st_gid != 0 or (st.st_mode & 0o7777) != mode:
            return True
        with open(path, "rb") as f:
            return f.read() != data
    except FileNotFoundError:
        return True


def _write(path: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".hz_files.")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, 0, 0)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dirs": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    changed: list[str] = []
    units: set[str] = set()
    for d in module.params["dirs"]:
        path, mode = d["path"], int(str(d["mode"]), 8)
        try:
            st = os.stat(path)
            ok = (st.st_mode & 0o7777) == mode and st.st_uid == 0 and st.st_gid == 0
        except FileNotFoundError:
            ok = False
        if not ok:
            changed.append(path)
            if not module.check_mode:
                os.makedirs(path, mode=mode, exist_ok=True)
                os.chmod(path, mode)
                os.chown(path, 0, 0)
    for f in module.params["files"]:
        path, mode = f["path"], int(str(f["mode"]), 8)
        data = str(f["content"]).encode()
        if _differs(path, data, mode):
            changed.append(path)
            units.update(f.get("units") or [])
            if not module.check_mode:
                _write(path, data, mode)
    module.exit_json(changed=bool(changed), files=changed, units=sorted(units))


if __name__ == "__main__":
    main()
