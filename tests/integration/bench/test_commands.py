"""Every benchmark command the README (and the Makefile) gives runs as written from a checkout:
``.venv/bin/python bench/<script>.py``, with no PYTHONPATH set."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import PROJECT_ROOT

WRITTEN = re.compile(r"(?:\.venv/bin/python|\$\(PY\)) (bench/\w+\.py)")


def written_commands() -> set[str]:
    """The bench scripts the README and the Makefile tell people to run."""
    text = (PROJECT_ROOT / "README.md").read_text() + (PROJECT_ROOT / "Makefile").read_text()
    return set(WRITTEN.findall(text))


def runnable_scripts() -> set[str]:
    return {str(path.relative_to(PROJECT_ROOT)) for path in (PROJECT_ROOT / "bench").glob("*.py")
            if 'if __name__ == "__main__":' in path.read_text()}


def python() -> str:
    """The checkout's interpreter, as the README names it (the running one where there is none)."""
    venv = PROJECT_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def test_the_readme_gives_a_command_for_every_bench_script():
    assert written_commands() == runnable_scripts()


@pytest.mark.parametrize("script", sorted(runnable_scripts()))
def test_a_bench_script_starts_as_written(script):
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([python(), script, "--help"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {Path(script).name}")
