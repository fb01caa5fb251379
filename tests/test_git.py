"""environments.git against repositories a branch author crafted: trees built with git's plumbing
hold what a checkout would refuse (`..`, symlinks), and the portal must not write them out."""

import subprocess
from pathlib import Path

import pytest

from environments import demo, git
from environments.backends import BackendError


def plumbing(repo: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], input=stdin.encode(),
                          capture_output=True, check=True)
    return done.stdout.decode().strip()


def blob(repo: Path, content: str) -> str:
    return plumbing(repo, "hash-object", "-w", "--stdin", stdin=content)


def tree(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """entries: (mode, object, name); git's mktree would not build a `..` from a path."""
    kinds = {"040000": "tree", "160000": "commit"}
    listing = "".join(f"{mode} {kinds.get(mode, 'blob')} {sha}\t{name}\n"
                      for mode, sha, name in entries)
    return plumbing(repo, "mktree", "--missing", stdin=listing)


def commit_tree(repo: Path, top: str, branch: str) -> str:
    sha = plumbing(repo, *demo.IDENTITY, "commit-tree", top, "-m", "tests")
    plumbing(repo, "update-ref", f"refs/heads/{branch}", sha)
    return sha


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    here = tmp_path / "repo"
    git.run("init", "--quiet", "--initial-branch=main", str(here))
    inside = tree(here, [("100644", blob(here, "def test_ok(): pass\n"), "test_ok.py")])
    commit_tree(here, tree(here, [("040000", inside, "tests")]), "main")
    return here


def escaping_commit(repo: Path) -> str:
    """tests/../../pwned.py: two folders named `..` under tests/."""
    pwned = tree(repo, [("100644", blob(repo, "pwned\n"), "pwned.py")])
    up = tree(repo, [("040000", tree(repo, [("040000", pwned, "..")]), "..")])
    return commit_tree(repo, tree(repo, [("040000", up, "tests")]), "evil")


def test_export_writes_the_test_files_of_the_commit(repo, tmp_path):
    scratch = tmp_path / "scratch"

    git.export(repo / ".git", "main", "tests", scratch)

    assert (scratch / "tests" / "test_ok.py").read_text() == "def test_ok(): pass\n"


def test_a_tree_entry_named_dotdot_is_refused_and_nothing_is_written_outside(repo, tmp_path):
    scratch = tmp_path / "work" / "scratch"
    scratch.mkdir(parents=True)
    sha = escaping_commit(repo)

    with pytest.raises(BackendError, match=r"tests/\.\./\.\./pwned\.py.*outside"):
        git.export(repo / ".git", sha, "tests", scratch)

    assert not list(tmp_path.rglob("pwned.py"))


@pytest.mark.parametrize(("mode", "name"), [("120000", "symlink"), ("160000", "submodule")])
def test_a_symlink_or_submodule_among_the_test_files_is_refused(repo, tmp_path, mode, name):
    target = blob(repo, "../../outside") if mode == "120000" else plumbing(repo, "rev-parse",
                                                                            "main")
    inside = tree(repo, [("100644", blob(repo, "x = 1\n"), "a.py"), (mode, target, "conftest.py")])
    sha = commit_tree(repo, tree(repo, [("040000", inside, "tests")]), "links")
    scratch = tmp_path / "scratch"

    with pytest.raises(BackendError, match=f"not a plain file.*{name}"):
        git.export(repo / ".git", sha, "tests", scratch)

    assert not scratch.exists()  # refused before anything was written


@pytest.mark.parametrize("first", ["clone", "fetch"])
def test_the_mirror_refuses_a_repository_holding_a_dotdot_tree(repo, tmp_path, first):
    mirror = tmp_path / "mirror.git"
    if first == "fetch":
        git.sync_mirror(mirror, str(repo))

    escaping_commit(repo)
    with pytest.raises(BackendError, match="hasDotdot"):
        git.sync_mirror(mirror, str(repo))

    if first == "clone":
        assert not (mirror / "HEAD").exists()
    else:  # what the mirror had stays, without the refused branch
        refs = git.run("--git-dir", str(mirror), "for-each-ref", "--format=%(refname)")
        assert refs.split() == ["refs/heads/main"]
