"""The walkthrough in docs/plugins.md builds a working descriptor package from its files as written."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path

import amp_core
from amp_core import PluginManager
from amp_core.testing import check_descriptor

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
SECTION = "## Walkthrough: a new descriptor from an empty folder"
FILE = re.compile(r"^File `([^`]+)`:\n\n```[a-z]*\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def walkthrough() -> str:
    text = DOCS.read_text()
    assert SECTION in text, f"{DOCS} lost its section {SECTION!r}"
    body = text.split(SECTION, 1)[1]
    return body.split("\n## ", 1)[0]


def write_files(folder: Path) -> dict[str, Path]:
    """Write every ``File `path`:`` block of the walkthrough under ``folder``; return them by path."""
    files = {}
    for name, content in FILE.findall(walkthrough()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
        files[name] = path
    return files


def test_the_walkthrough_gives_every_file_of_its_layout(tmp_path):
    files = write_files(tmp_path)
    assert sorted(files) == [
        "amp-radial/pyproject.toml",
        "amp-radial/src/amp_radial/__init__.py",
        "amp-radial/tests/test_radial.py",
    ]
    tree = walkthrough()
    for name in files:
        assert Path(name).name in tree, f"the layout sketch does not show {name}"


def test_the_pyproject_registers_the_module_through_the_amp_entry_point_group(tmp_path):
    files = write_files(tmp_path)
    project = tomllib.loads(files["amp-radial/pyproject.toml"].read_text())["project"]
    assert project["entry-points"]["amp"] == {"amp_radial": "amp_radial"}
    assert "amp-core" in project["dependencies"]
    version_row = re.search(r"descriptor\s+radial\s+(\S+) (\S+)\s+active", walkthrough())
    assert version_row is not None, "the 'amp plugins' output does not list radial"
    assert version_row.groups() == (project["name"], project["version"])


def load_module(files: dict[str, Path], monkeypatch) -> object:
    """Import the walkthrough's module as ``amp_radial`` (so pickling finds it), as pip install -e would."""
    spec = importlib.util.spec_from_file_location("amp_radial", files["amp-radial/src/amp_radial/__init__.py"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "amp_radial", module)
    spec.loader.exec_module(module)
    return module


def test_the_walkthrough_descriptor_passes_check_descriptor(tmp_path, monkeypatch):
    module = load_module(write_files(tmp_path), monkeypatch)
    (entry,) = module.amp_descriptors()
    assert entry.name == "radial"
    check_descriptor(entry.factory(entry.params()))
    check_descriptor(entry.factory(entry.params(cutoff=3.5, etas=(0.3, 1.0, 4.0))))


def test_the_walkthrough_tests_pass_with_the_plugin_registered(tmp_path, monkeypatch):
    """Run tests/test_radial.py as written, its create_descriptor bound to a manager holding the plugin."""
    files = write_files(tmp_path)
    module = load_module(files, monkeypatch)
    manager = PluginManager(entry_points=())
    manager.register(module, name="amp_radial")
    assert "radial" in manager.registered("descriptor")
    namespace: dict[str, object] = {"__name__": "test_radial"}
    exec(compile(files["amp-radial/tests/test_radial.py"].read_text(), "test_radial.py", "exec"), namespace)
    namespace["create_descriptor"] = functools.partial(amp_core.create_descriptor, manager=manager)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert len(tests) == 2
    for test in tests:
        test()
