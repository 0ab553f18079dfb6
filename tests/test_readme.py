"""The README's two set-up commands stay true: CI runs the test command verbatim."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _first_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```(?:bash|sh|console)\n(.+?)\n```", text, flags=re.S)[:2]


def test_ci_runs_the_readme_test_command():
    main_job, tests = _first_commands()
    assert "pytest" in tests and "torch==2.13.0" in tests
    assert "torch==2.13.0" in main_job and "genrobust" in main_job
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests.strip() in [line.strip() for line in ci_lines]
