#!/usr/bin/python3
"""Ansible module: a node's systemd units enabled and running, some restarted, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hz_units
short_description: Ensure systemd units are enabled and active; restart the named ones
description:
  - One module call per node instead of one per unit and action. Units that were not active are
    started (which reads the new configuration); of the units in C(restart), only those that were
    already active are restarted: a first start needs no restart.
  - Units in C(no_block) are queued without waiting (etcd members wait for each other).
options:
  units:
    description: Units to enable and start, in this order.
    type: list
    elements: str
    required: true
  restart:
    description: Units whose configuration or binary changed.
    type: list
    elements: str
    default: []
  no_block:
    description: Units started or restarted without waiting for the job.
    type: list
    elements: str
    default: []
  daemon_reload:
    description: Reload systemd's unit files first.
    type: bool
    default: false
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "str", "required": True},
            "restart": {"type": "list", "elements": "str", "default": []},
            "no_block": {"type": "list", "elements": "str", "default": []},
            "daemon_reload": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    systemctl = module.get_bin_path("systemctl", required=True)

    def run(*args: str) -> str:
        rc, out, err = module.run_command([systemctl, *args])
        if rc != 0:
            module.fail_json(msg=f"systemctl {' '.join(args)}: {(err or out).strip()}")
        return str(out)

    if p["daemon_reload"] and not module.check_mode:
        run("daemon-reload")
    units = p["units"]
    # one systemctl call for every unit's state
    out = module.run_command([systemctl, "show", "--property=Id,UnitFileState,ActiveState", *units])[1]
    state: dict[str, dict[str, str]] = {}
    for block, unit in zip(out.strip().split("\n\n"), units):
        state[unit] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    enable = [u for u in units if state[u].get("UnitFileState") != "enabled"]
    start = [u for u in units if state[u].get("ActiveState") not in ("active", "activating", "reloading")]
    restart = [u for u in units if u in p["restart"] and u not in start]
    if not module.check_mode:
        if enable:
            run("enable", *enable)
        for u in start + restart:
            verb = "start" if u in start else "restart"
            run(verb, *(["--no-block"] if u in p["no_block"] else []), u)
    module.exit_json(
        changed=bool(enable or start or restart), enabled=enable, started=start, restarted=restart
    )


if __name__ == "__main__":
    main()
