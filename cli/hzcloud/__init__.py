"""hzcloud: a hospital's rack of servers as a private cloud."""

from __future__ import annotations

import os

# One `hzcloud up` runs Pulumi's Automation API (gRPC, in this process) and then forks
# ansible-playbook (ansible-runner's pexpect). With gRPC's fork support on, grpcio >= 1.81
# restarts its epoll poller in the forked child, which then aborts before exec ("Epoll1Poller
# ... epoll_wait error: Bad file descriptor", grpc/grpc#43055): a phase failed with "ansible-runner
# ended failed (rc None)" now and then. Nothing here forks without exec, so fork support stays off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# pydantic looks for plugins in every installed package's metadata when the first model is
# built (~40 ms of each command's start); hzcloud's models use none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def __getattr__(name: str) -> str:
    # Read on demand: importlib.metadata costs ~80 ms, which every command would pay at start.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("hzcloud")
        except PackageNotFoundError:  # running from a source tree
            return "0.0.0+src"
    raise AttributeError(name)
