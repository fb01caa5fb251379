"""Commits made during a test on a branch of the demo repository (a push, as GitHub sees it)."""

from pathlib import Path

from environments import demo, git


def commit_on(repo: Path, branch: str, name: str, content: str) -> str:
    """Write `name` on `branch` and commit it; return the new commit."""
    here = str(repo)
    git.run("-C", here, "checkout", "--quiet", branch)
    (repo / name).write_text(content)
    git.run("-C", here, "add", "-A")
    # A new commit even when an earlier test of the session wrote the same content there.
    git.run("-C", here, *demo.IDENTITY, "commit", "--quiet", "--allow-empty", "-m", "change")
    commit = git.run("-C", here, "rev-parse", "HEAD").strip()
    git.run("-C", here, "checkout", "--quiet", "main")
    return commit
