"""The README's set-up commands stay what .ci/run runs."""
from conftest import REPO


def test_ci_runs_the_readmes_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    blocks = [line for line in readme[:15] if line.startswith("python3 -m venv")]
    assert len(blocks) == 2, "the README starts with two set-up commands"
    run_cmd, test_cmd = blocks
    assert run_cmd.endswith("maml-sweep") and test_cmd.endswith("python -m pytest")
    assert test_cmd in (REPO / ".ci" / "run").read_text().splitlines()
