"""The eight-node lab, booted once per test session and shared by every lab test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hzrun
import pytest

from hzcloud import lab
from hzcloud.model import load_site


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    tools = ("systemd-nspawn", "debootstrap", "apt-cacher-ng")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install systemd-container debootstrap apt-cacher-ng)"
    return None


@pytest.fixture(scope="session")
def lab_up_result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, lab.LabResult]]:
    """Boot the lab once (HZCLOUD_LAB_SITE reuses a folder; HZCLOUD_LAB_KEEP=1 leaves it up)."""
    reason = _missing_prerequisite()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the lab tests: {reason}")
        pytest.skip(reason)
    site = Path(os.environ.get("HZCLOUD_LAB_SITE") or tmp_path_factory.mktemp("lab") / "site")
    _SEEN["site"] = str(site)
    try:
        result = lab.up(site)
    except BaseException:
        # A boot that fails halfway must not leave loop devices, mounts and bridges behind.
        if not os.environ.get("HZCLOUD_LAB_KEEP"):
            lab.down(site)
        raise
    yield site, result
    if not os.environ.get("HZCLOUD_LAB_KEEP"):
        lab.down(site)


@pytest.fixture(scope="session")
def lab_site(lab_up_result: tuple[Path, lab.LabResult]) -> Path:
    """The site folder of the running lab: site.yaml, keys/id_ed25519, state/known_hosts."""
    return lab_up_result[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Taking the lab down must come after every other test that uses it, in any module.
    last = [i for i in items if i.get_closest_marker("lab_teardown")]
    items[:] = [i for i in items if i not in last] + last


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab_teardown: runs after every other test (takes the lab down)"
    )
    _SEEN["config"] = config


# A lab failure is reported the moment it happens, with the host's and the site's state: a run
# that CI ends at its time limit prints no summary, and the tail of its output is all there is.
_SEEN: dict[str, Any] = {"started": time.monotonic(), "failures": 0}


def _host_state() -> str:
    st = os.statvfs("/")
    free = st.f_bavail * st.f_frsize
    meminfo = {
        line.split(":")[0]: line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
    }
    return (
        f"host: disk / {free / 2**30:.1f} GiB free ({100 * st.f_bavail / st.f_blocks:.1f} %), "
        f"memory {int(meminfo.get('MemAvailable', 0)) / 2**20:.1f} GiB available, "
        "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    )


def _site_state(site: Path) -> list[str]:
    """The PostgreSQL members and Ceph's health as the site's own tools say (bounded)."""
    lines = []
    try:
        members = hzrun.patroni_members(site)
        lines.append(
            "patroni: "
            + (
                ", ".join(f"{m.get('Member')} {m.get('Role')} {m.get('State')}" for m in members)
                or "no member answered"
            )
        )
    except Exception as exc:  # a diagnosis never fails the run
        lines.append(f"patroni: {type(exc).__name__}: {exc}"[:300])
    try:
        mon = hzrun.hosts_with(site, "ceph-mon")
        if mon:
            res = hzrun.node_run(site, mon[0]["name"], "timeout 20 ceph health", timeout=40)
            lines.append(f"ceph: {(res.stdout or res.stderr).strip()[:300]}")
    except Exception as exc:
        lines.append(f"ceph: {type(exc).__name__}: {exc}"[:300])
    return lines


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.failed or "config" not in _SEEN:
        return
    _SEEN["failures"] += 1
    tr = _SEEN["config"].pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    elapsed = time.monotonic() - _SEEN["started"]
    out = [
        "",
        f"!! {report.nodeid} failed in {report.when} after {report.duration:.0f} s "
        f"(at {elapsed:.0f} s of the lab tests)",
        _host_state(),
    ]
    site = os.environ.get("HZCLOUD_LAB_SITE") or _SEEN.get("site")
    if site and _SEEN["failures"] <= 3:  # the first failures say most; later ones cascade
        out += _site_state(Path(site))
    text = report.longreprtext.strip().splitlines()
    out += [f"   {line}"[:240] for line in text[-25:]]
    for line in out:
        tr.write_line(line)


# The phases this build converges on the lab, in one `hzcloud up` shared by every lab test.
LAB_PHASES = os.environ.get("HZCLOUD_LAB_PHASES", "preflight,base,storage,data")


@pytest.fixture(scope="session")
def converged_site(lab_site: Path) -> dict[str, Any]:
    """The lab after one real `hzcloud up` of LAB_PHASES; its JSON summary plus wall time."""
    t0 = time.monotonic()
    _rc, data = hzrun.up_json(lab_site, LAB_PHASES)
    data["wall_seconds"] = time.monotonic() - t0
    data["site"] = str(lab_site)
    return data


@pytest.fixture(scope="session")
def site_artifacts(lab_site: Path) -> Path:
    """The site's artifacts folder: HZCLOUD_ARTIFACTS (linked into the site), built if needed.

    The build runs under the same lock as scripts/test's background build, so this waits for
    that one and then finds everything up to date (seconds).
    """
    wanted = os.environ.get("HZCLOUD_ARTIFACTS")
    folder = lab_site / load_site(lab_site).artifacts
    if not wanted:
        if not (folder / "manifest.json").exists():
            if os.environ.get("CI"):
                pytest.fail(f"no artifacts in {folder}: CI must set HZCLOUD_ARTIFACTS")
            pytest.skip(f"no artifacts in {folder}: set HZCLOUD_ARTIFACTS (scripts/test does)")
        return folder
    if not folder.exists():
        folder.symlink_to(wanted)
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    build = f'{scripts}/build-artifacts "$0" && {scripts}/build-images "$0"'
    images = hzrun.bundle_images(lab_site)
    if images:  # the images of the bundle entries the site picks (its whole-site up needs them)
        build += f' && {scripts}/build-bundle-images "$0" {" ".join(images)}'
    t0 = time.monotonic()
    res = subprocess.run(
        ["flock", f"{wanted}.lock", "sh", "-c", build, wanted],
        capture_output=True,
        text=True,
        timeout=3 * 3600,
    )
    assert res.returncode == 0, f"building the artifacts failed:\n{res.stderr[-3000:]}"
    print(f"\nartifacts ready after waiting {time.monotonic() - t0:.0f} s")
    return folder
