"""The pre-commit hook (``.pre-commit-hooks.yaml``) with the real ``pre-commit`` tool, as a
repository that adds it in three lines uses it: ``pre-commit install``, then ``git commit``.

pre-commit installs the hook's repository with pip into a virtualenv of its own, Keyplane's
dependencies included (from the package index, pinned by ``constraints.txt`` through
``PIP_CONSTRAINT``, without compiling .pyc files): some 20-30 s, hence one test. The hook's
repository is a copy of this working tree committed to a temporary git repository, so that
the test runs the code as it is (uncommitted changes included) and never touches this
repository's own git state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyplane.kit.keys import generate_api_key

ROOT = Path(__file__).resolve().parents[2]
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _git(cwd: Path, env: dict[str, str], *args: str) -> str:
    result = _run(["git", *args], cwd, env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _hook_repository(path: Path, env: dict[str, str]) -> str:
    """This working tree's package, committed to a new repository; returns the commit."""
    path.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(ROOT / name, path / name)
    shutil.copytree(
        ROOT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    _git(path, env, "init", "--quiet")
    _git(path, env, "add", "--all")
    _git(path, env, "commit", "--quiet", "--message", "keyplane")
    return _git(path, env, "rev-parse", "HEAD")


def test_the_hook_refuses_a_commit_with_a_key_and_lets_a_clean_one_through(
    tmp_path: Path,
) -> None:
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))},
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PIP_CONSTRAINT": str(ROOT / "constraints.txt"),
        "PIP_NO_COMPILE": "1",
    }
    rev = _hook_repository(tmp_path / "keyplane", env)

    project = tmp_path / "project"
    project.mkdir()
    _git(project, env, "init", "--quiet")
    # The three lines a repository adds (here pointing at the local copy).
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {tmp_path / 'keyplane'}\n    rev: {rev}\n"
        "    hooks: [{id: keyplane-scan}]\n"
    )
    installed = _run([str(PRE_COMMIT), "install"], project, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    key = generate_api_key()
    (project / "deploy.sh").write_text(f'#!/bin/sh\nexport KEYPLANE_API_KEY="{key}"\n./deploy\n')
    (project / "README.md").write_text("# project\n")
    _git(project, env, "add", "--all")
    refused = _run(["git", "commit", "--message", "deploy"], project, env, timeout=900)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "keyplane-scan" in output
    assert f"deploy.sh:2:26: kp_…{key[-4:]}" in output
    assert key not in output
    assert _run(["git", "rev-parse", "--verify", "HEAD"], project, env).returncode != 0

    # The key moved out of the repository: the same commit goes through.
    (project / "deploy.sh").write_text('#!/bin/sh\nexport KEYPLANE_API_KEY="$(cat ~/.key)"\n')
    _git(project, env, "add", "--all")
    accepted = _run(["git", "commit", "--message", "deploy"], project, env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "Keyplane API keys" in accepted.stdout + accepted.stderr
    assert _git(project, env, "log", "--format=%s") == "deploy"
