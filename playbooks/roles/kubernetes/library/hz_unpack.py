#!/usr/bin/python3
"""Ansible module: install binaries from copied .tar.gz archives, then stamp and remove them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hz_unpack
short_description: Unpack archives of binaries into a folder, write a stamp, remove the archives
description:
  - One call per node. Each member is written to a temporary file and renamed over the old one,
    so a running binary is replaced, never written into (no "text file busy"). unarchive reads
    every archive twice (compare, then extract) and took ~60 s for 175 MB on a busy lab.
options:
  archives:
    description: The archives on the node.
    type: list
    elements: path
    required: true
  dest:
    description: Folder for the binaries (root, 0755).
    type: path
    required: true
  stamp:
    description: File to write C(stamp_content) to once every archive is unpacked.
    type: path
    required: true
  stamp_content:
    description: What the stamp says (the archives' names).
    type: str
    required: true
"""

import os
import shutil
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "archives": {"type": "list", "elements": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "stamp": {"type": "path", "required": True},
            "stamp_content": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True)
    installed: list[str] = []
    for archive in p["archives"]:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if not member.isfile() or not name or name != member.name:
                    module.fail_json(msg=f"{archive}: unexpected member {member.name!r}")
                src = tar.extractfile(member)
                assert src is not None
                fd, tmp = tempfile.mkstemp(dir=p["dest"], prefix=f".{name}.")
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chown(tmp, 0, 0)
                os.chmod(tmp, 0o755)
                os.rename(tmp, os.path.join(p["dest"], name))
                installed.append(name)
    with open(p["stamp"] + ".part", "w") as f:
        f.write(p["stamp_content"] + "\n")
    os.rename(p["stamp"] + ".part", p["stamp"])
    for archive in p["archives"]:
        os.unlink(archive)
    module.exit_json(changed=True, installed=installed)


if __name__ == "__main__":
    main()
