"""The README's two set-up commands stay true (CI runs the test command verbatim), its tours run, it stays a first
page (≤ 250 lines), and the documentation site builds with no broken link and no undocumented public name."""

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

    text = (REPO / "docs" / "tutorials" / "own-models.md").read_text()
    after = text.split("<!-- tests/test_readme.py runs this block, then the commands below -->", 1)[1]
    code, commands = re.findall(r"```(?:python|bash)\n(.+?)\n```", after, flags=re.S)[:2]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/tutorials/own-models.md", "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "classifier.onnx").is_file() and (tmp_path / "decoder.onnx").is_file()
    for command in commands.replace("\\\n", " ").splitlines():
        args = shlex.split(command)
        assert args[0] == "genrobust"
        res = CliRunner().invoke(main, args[1:])
        assert res.exit_code == 0, (command, res.output)
        assert "cat" in res.output


def test_the_readme_is_a_first_page_and_its_python_tour_runs(monkeypatch, tmp_path):
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    tour = re.findall(r"```python\n(.+?)\n```", text, flags=re.S)[0]
    small = tour.replace("n=10_000", "n=200").replace("n=20)", "n=1, classes=[8])")
    small = small.replace("particles=200", "particles=10")
    small = small.replace("n_starts=100", "n_starts=4").replace("eps=[0.01, 0.03]", "eps=[0.01]")
    monkeypatch.chdir(tmp_path)
    exec(compile(small, "README.md", "exec"), {"__name__": "readme_tour"})


def test_every_public_name_has_a_docstring():
    import genrobust as gr

    missing = [name for name in gr.__all__ if name != "__version__" and not (getattr(gr, name).__doc__ or "").strip()]
    assert not missing, missing


def test_the_documentation_site_builds_strictly_offline(tmp_path):
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d",
                           str(site)], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "index.html").is_file() and (site / "reference" / "api.html").is_file()
    api = (site / "reference" / "api.html").read_text()
    assert "global_correctness" in api and "rare_failure" in api


def test_every_command_and_option_of_the_cli_tour_exists():
    import shlex

    from click.testing import CliRunner

    from genrobust.cli import main

    text = (REPO / "README.md").read_text()
    tour = text.split("## The command line in ten lines", 1)[1]
    block = re.findall(r"```bash\n(.+?)\n```", tour, flags=re.S)[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    assert len(lines) == 10
    for line in lines:
        args = shlex.split(line)
        assert args[0] == "genrobust"
        words = [a for a in args[1:3] if not a.startswith("-")]
        sub = words[:2] if words[:2] in (["models", "list"], ["rate", "serve"]) else words[:1]
        help_text = CliRunner().invoke(main, [*sub, "--help"]).output
        assert "Usage:" in help_text, line
        for opt in (a for a in args if a.startswith("--")):
            assert opt in help_text, (line, opt)


def test_the_readmes_links_and_pictures_exist():
    text = (REPO / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith("http")]
    assert targets and all((REPO / t).exists() for t in targets), [t for t in targets if not (REPO / t).exists()]
