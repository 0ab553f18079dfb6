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


def test_the_own_models_example_runs_from_python_and_the_command_line(tmp_path, monkeypatch):
    import shlex

    from click.testing import CliRunner

    from genrobust.cli import main

    text = (REPO / "README.md").read_text()
    after = text.split("<!-- tests/test_readme.py runs this block, then the commands below -->", 1)[1]
    code, commands = re.findall(r"```(?:python|bash)\n(.+?)\n```", after, flags=re.S)[:2]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "classifier.onnx").is_file() and (tmp_path / "decoder.onnx").is_file()
    for command in commands.replace("\\\n", " ").splitlines():
        args = shlex.split(command)
        assert args[0] == "genrobust"
        res = CliRunner().invoke(main, args[1:])
        assert res.exit_code == 0, (command, res.output)
        assert "cat" in res.output
