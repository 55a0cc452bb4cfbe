#!/usr/bin/python3
"""Ansible module: what the kubernetes role needs to know about a node, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hz_kube_node
short_description: Read a Kubernetes node's packages, binaries, snapshot filesystem and images
description:
  - One read-only call instead of one per question (each round trip costs ~0.5-2 s on a busy
    control node). Never changes anything.
options:
  packages:
    description: Debian packages that must be installed.
    type: list
    elements: str
    required: true
  binaries:
    description: Binaries (name -> size in bytes) that must be in bin_dir.
    type: dict
    required: true
  bin_dir:
    description: Where the binaries are.
    type: str
    required: true
  stamp:
    description: File naming the archive the binaries came from.
    type: str
    required: true
  images_namespace:
    description: containerd namespace whose images are listed.
    type: str
    default: k8s.io
"""

import os

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "required": True},
            "binaries": {"type": "dict", "required": True},
            "bin_dir": {"type": "str", "required": True},
            "stamp": {"type": "str", "required": True},
            "images_namespace": {"type": "str", "default": "k8s.io"},
        },
        supports_check_mode=True,
    )
    p = module.params
    rc, out, _ = module.run_command(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Package}\\n"])
    installed = {line[3:].strip() for line in out.splitlines() if line.startswith("ii ")}
    missing = [pkg for pkg in p["packages"] if pkg not in installed]

    # binaries in place: the size the manifest says, from the archive the stamp names
    try:
        with open(p["stamp"]) as f:
            stamp = f.read().strip()
    except FileNotFoundError:
        stamp = ""
    wrong = []
    for name, size in p["binaries"].items():
        try:
            if os.stat(os.path.join(p["bin_dir"], name)).st_size != int(size):
                wrong.append(name)
        except FileNotFoundError:
            wrong.append(name)

    rc, out, _ = module.run_command(["findmnt", "--noheadings", "--output", "FSTYPE", "--target", "/var/lib"])
    fstype = out.strip() if rc == 0 else ""

    images: list[str] = []
    ctr = module.get_bin_path("ctr")
    if ctr and os.path.exists("/run/containerd/containerd.sock"):
        rc, out, _ = module.run_command([ctr, "--namespace", p["images_namespace"], "images", "list", "--quiet"])
        if rc == 0:
            images = out.split()
    module.exit_json(
        changed=False,
        missing_packages=missing,
        stamp=stamp,
        wrong_binaries=wrong,
        var_lib_fstype=fstype,
        images=images,
    )


if __name__ == "__main__":
    main()
