"""The README works as written: its Python blocks run, its config is the quickstart's, CI runs its commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amp_core.config import load_config, tomllib

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)\n(.*?)^```\s*$", re.S | re.M)
LANGUAGES = ("bash", "python", "toml")  # python blocks run; bash blocks are commands CI runs


def blocks(language: str | None = None) -> list[str]:
    """Return the README's fenced code blocks (of ``language``), in order."""
    return [body for lang, body in FENCE.findall(README.read_text()) if language in (None, lang)]


def test_every_block_says_its_language():
    found = [lang for lang, _ in FENCE.findall(README.read_text())]
    assert found and all(lang in LANGUAGES for lang in found), found
    assert README.read_text().count("```") == 2 * len(found), "an unmatched code fence"


@pytest.mark.parametrize("index", range(len(blocks("python"))), ids=lambda k: f"python-block-{k + 1}")
def test_python_block_runs_as_a_script(tmp_path, index):
    """Each block alone, pasted into a script in a fresh folder holding the shipped data."""
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "examples" / "data")
    script = tmp_path / "snippet.py"
    script.write_text(blocks("python")[index])
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr


def test_training_from_python_is_shown_with_what_it_returns(tmp_path):
    """The README shows ``amp_core.train`` on a dictionary and what the returned Potential carries."""
    (block,) = [b for b in blocks("python") if "train(" in b and "from amp_core import" in b]
    assert "from amp_core import" in block and 'if __name__ == "__main__":' in block
    for attribute in ("potential.training", "potential.config", "load("):
        assert attribute in block
    text = README.read_text()
    assert "`amp_core.train`" in text and "`converged`, `iterations`" in text and "`outcome`" in text
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "examples" / "data")
    (tmp_path / "snippet.py").write_text(block)
    result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^False \d+\n1\.0\n", result.stdout, re.M) and "(36, 3)" in result.stdout, result.stdout
    assert (tmp_path / "python-run" / "potential.json").is_file()


def test_python_blocks_guard_worker_code():
    """Code that may start spawn workers sits under ``if __name__ == "__main__":``."""
    for block in blocks("python"):
        if "multiprocessing" in block or "fortran" in block:
            assert 'if __name__ == "__main__":' in block, block


def test_toml_block_is_the_quickstart_config(tmp_path):
    (block,) = blocks("toml")
    quickstart = ROOT / "examples" / "quickstart" / "config.toml"
    assert tomllib.loads(block) == tomllib.loads(quickstart.read_text())
    (tmp_path / "quickstart").mkdir()
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    (tmp_path / "quickstart" / "config.toml").write_text(block)
    config = load_config(tmp_path / "quickstart" / "config.toml")
    assert config.run_dir == tmp_path / "quickstart" / "run"


def test_ci_runs_every_readme_command():
    """CI (.ci/run, a fresh environment) runs each bash block exactly as the README writes it."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for block in blocks("bash") for line in block.splitlines() if line.strip()]
    assert len(commands) >= 2
    for command in commands:
        assert command in ci, f"{command!r} is not run by .ci/run"


def test_install_commands_work_from_a_checkout():
    """amp-core is not on the package index: every pip command installs from this folder."""
    text = README.read_text()
    assert 'pip install ".[plot]"' in text
    for command in re.findall(r"pip install [^`\n]*", text):
        assert "amp-core" not in command, command


def test_plot_hint_installs_from_a_checkout(monkeypatch):
    from amp_core.errors import AmpError
    from amp_core.plotting import _pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(AmpError, match=r"pip install '\.\[plot\]'") as info:
        _pyplot()
    assert "amp-core[plot]" not in str(info.value)
