"""An `up` forks ansible-playbook after Pulumi's gRPC ran in the same process: the children
must start (grpc/grpc#43055 aborted about one in 40 of them before exec)."""

from __future__ import annotations

import subprocess
import sys

CHILDREN = 200

SCRIPT = f"""
import concurrent.futures
import hzcloud  # first, as every command: it sets what gRPC reads when it loads
import grpc
import pexpect

handler = grpc.method_handlers_generic_handler(
    "t.E", {{"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}}
)
server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
echo = grpc.insecure_channel(f"127.0.0.1:{{port}}").unary_unary("/t.E/Echo")
bad = []
for _ in range({CHILDREN}):
    echo(b"x")  # gRPC's poller is busy while the child is forked
    child = pexpect.spawn("/bin/true", encoding="utf-8")
    said = child.read()
    child.close()
    if child.exitstatus != 0 or said.strip():
        bad.append((child.exitstatus, child.signalstatus, said[:120]))
server.stop(0)
print(len(bad), bad[:2])
"""


def test_children_forked_while_grpc_runs_all_start() -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("0 "), f"children that died before exec: {res.stdout}"
