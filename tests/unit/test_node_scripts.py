"""Scripts the roles render for the nodes are Python that compiles once rendered (a template
error there shows on the node only, as a unit that restarts every 2 s)."""

from __future__ import annotations

import ast

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from hzcloud.resources import resource

ROLES = resource("playbooks") / "roles"


def render(path: str, **variables: object) -> str:
    templar = Templar(loader=DataLoader(), variables={"ansible_managed": "hzcloud", **variables})
    return str(templar.template(trust_as_template((ROLES / path).read_text())))


def test_the_api_vip_loop_renders_to_python_that_hands_over_safely() -> None:
    script = render(
        "kubernetes/templates/hzcloud-api-vip.py.j2",
        kubernetes_api_vip="10.77.0.101",
        hz_management_cidr="10.77.0.0/24",
        inventory_hostname="lab-01",
        ansible_host="10.77.0.11",
        kubernetes_api_port=6443,
        kubernetes_api_vip_lease_seconds=8,
    )
    tree = ast.parse(script)
    consts = {
        t.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)
    }
    assert consts["VIP"] == "10.77.0.101" and consts["ME"] == "lab-01" and consts["PREFIX"] == "24"
    # the holder drops the VIP (LEASE - MARGIN after its last renewal) before another server may
    # take it (LEASE after it saw that renewal), and renews several times within that window
    assert 0 < consts["MARGIN"] < consts["LEASE"]
    assert consts["RETRY"] * 3 <= consts["LEASE"] - consts["MARGIN"]
