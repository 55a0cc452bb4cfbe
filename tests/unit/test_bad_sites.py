"""Bad site files: each gives the exact problems expected, exit code 2 and never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hzcloud.errors import SiteError
from hzcloud.model import load_site, parse_site
from hzcloud.siteyaml import MAX_BYTES, MAX_NODES, Loaded, load_yaml_bytes

if TYPE_CHECKING:
    from conftest import Hz

BAD = Path(__file__).parent / "bad_sites"
SAMPLE_SITE = Path(__file__).resolve().parents[2] / "inventories" / "sample-hospital" / "site.yaml"

EXPECTED: dict[str, list[str]] = yaml.safe_load((BAD / "expected.yaml").read_text())
FILES = sorted(p.name for p in BAD.glob("*.yaml") if p.name != "expected.yaml")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SiteError) as info:
        load_site(path)
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def stderr_for(problems: list[str]) -> str:
    """What `hzcloud validate` prints for these problems, in the house format."""
    n = len(problems)
    lines = [f"error: {n} problem{'s' if n != 1 else ''} in the site files; nothing was changed"]
    for text in problems:
        head, fix = text.rsplit(" (fix: ", 1)
        lines += [f"  • {head}", f"      fix: {fix[:-1]}"]
    return "\n".join(lines) + "\n"


def in_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy(BAD / name, folder / "site.yaml")
    return folder


def test_the_corpus_is_large_and_fully_described() -> None:
    assert len(FILES) >= 30
    assert sorted(EXPECTED) == FILES
    assert all(EXPECTED[name] for name in FILES)


@pytest.mark.parametrize("name", FILES)
def test_load_site_reports_exactly_the_expected_problems(tmp_path: Path, name: str) -> None:
    assert problems_of(in_folder(tmp_path, name)) == EXPECTED[name]


@pytest.mark.parametrize("name", FILES)
def test_validate_file_prints_every_problem_and_exits_2(hz: Hz, name: str) -> None:
    result = hz("validate", str(BAD / name))
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    named = [p.replace("site.yaml", name, 1) for p in EXPECTED[name]]
    assert result.stderr == stderr_for(named)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["bad-ip.yaml", "alias-bomb.yaml", "empty.yaml"])
def test_validate_folder_names_site_yaml(tmp_path: Path, hz: Hz, name: str) -> None:
    result = hz("validate", str(in_folder(tmp_path, name)))
    assert result.exit_code == 2
    assert result.stderr == stderr_for(EXPECTED[name])


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_bytes(b"# padding\n" * (MAX_BYTES // 10) + b"hospital: {}\n")
    size = site.stat().st_size
    assert problems_of(site) == [
        f"site.yaml file is {size} bytes; a site file is at most {MAX_BYTES} bytes "
        "(fix: check that this is the right file)"
    ]


def test_a_file_of_too_many_nodes_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("servers: [" + "0," * MAX_NODES + "0]\n")
    assert site.stat().st_size <= MAX_BYTES
    assert problems_of(site) == [
        f"site.yaml more than {MAX_NODES} YAML nodes (fix: check that this is the right file)"
    ]


def test_a_missing_site_is_bad_input(tmp_path: Path, hz: Hz) -> None:
    result = hz("validate", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert f"• {tmp_path / 'nowhere'} file not found" in result.stderr
    assert "Traceback" not in result.output


def test_a_folder_without_site_yaml_is_bad_input(tmp_path: Path, hz: Hz) -> None:
    result = hz("validate", str(tmp_path))
    assert result.exit_code == 2
    assert f"• {tmp_path / 'site.yaml'} file not found" in result.stderr


def test_site_yaml_that_is_a_folder_is_bad_input(tmp_path: Path, hz: Hz) -> None:
    (tmp_path / "site.yaml").mkdir()
    result = hz("validate", str(tmp_path))
    assert result.exit_code == 2
    assert f"• {tmp_path / 'site.yaml'} is a folder without site.yaml" in result.stderr


@pytest.mark.parametrize(
    "command", [["plan"], ["render"], ["up", "--dry-run"], ["up"], ["verify"], ["init"]]
)
def test_every_command_reading_a_site_exits_2_on_a_bad_one_and_touches_nothing(
    tmp_path: Path, hz: Hz, command: list[str]
) -> None:
    folder = in_folder(tmp_path, "several-cross-field-problems.yaml")
    args = [*command, str(folder)]
    if command == ["init"]:
        args = ["init", str(tmp_path / "new"), "--from", str(folder / "site.yaml")]
    result = hz(*args)
    assert result.exit_code == 2
    assert result.stderr == stderr_for(EXPECTED["several-cross-field-problems.yaml"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["site", "site.yaml"]


def test_debug_shows_the_traceback(tmp_path: Path, hz: Hz) -> None:
    result = hz("--debug", "validate", str(in_folder(tmp_path, "bad-ip.yaml")))
    assert isinstance(result.exception, SiteError)


# Fuzzing: whatever the bytes, the loader answers with SiteError or a Site, nothing else.

SAMPLE_TEXT = SAMPLE_SITE.read_text()
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def accepts_or_explains(raw: bytes) -> None:
    try:
        parse_site(load_yaml_bytes(raw, "site.yaml"))
    except SiteError as exc:
        assert exc.problems
        assert all(p.what and p.fix for p in exc.problems)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_site_error(raw: bytes) -> None:
    accepts_or_explains(raw)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(SAMPLE_TEXT)),
            st.integers(0, 12),
            st.text(alphabet=" \t\n:-[]{}&*!|>'\"#%@`,?~0123456789abz./<", max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mangled_sample_sites_never_raise_anything_but_site_error(
    edits: list[tuple[int, int, str]],
) -> None:
    text = SAMPLE_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    accepts_or_explains(text.encode())


YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
SAMPLE_DATA = yaml.safe_load(SAMPLE_TEXT)


def key_paths(data: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += key_paths(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += key_paths(v, (*path, i))
    return out


SAMPLE_PATHS = key_paths(SAMPLE_DATA)[1:]


@FUZZ
@given(st.sampled_from(SAMPLE_PATHS), YAML_VALUES)
def test_any_value_at_any_key_never_raises_anything_but_site_error(
    path: tuple[object, ...], value: object
) -> None:
    data = yaml.safe_load(SAMPLE_TEXT)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    try:
        parse_site(Loaded(data, {}))
    except SiteError as exc:
        assert all(p.what and p.fix for p in exc.problems)


_YAML_FILES = sorted(
    p
    for p in [*Path("inventories").rglob("*.yaml"), *Path("bundles").rglob("*.yaml")]
    if "state" not in p.parts
)


@pytest.mark.parametrize("path", _YAML_FILES, ids=str)
def test_libyaml_and_the_python_loader_read_every_shipped_file_alike(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hzcloud import siteyaml

    fast = load_yaml_bytes(path.read_bytes(), path.name)
    monkeypatch.setattr(siteyaml, "_CLoader", None)
    slow = load_yaml_bytes(path.read_bytes(), path.name)
    assert (fast.data, fast.lines) == (slow.data, slow.lines)
