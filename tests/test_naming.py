"""Any branch name git accepts becomes DNS-safe, deterministic, distinct names."""

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from environments import naming

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
COMPONENTS = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?\Z")
PROJECTS = COMPONENTS  # the same DNS-label rule
# Characters git refuses in a ref (git check-ref-format): controls, space, ~^:?*[\ and DEL.
_GIT_BAD = set("~^:?*[\\ \x7f") | {chr(c) for c in range(32)}


def git_accepts(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("-")
        and not set(name) & _GIT_BAD
        and ".." not in name
        and "@{" not in name
        and name != "@"
        and not name.endswith((".", "/"))
        and all(p and not p.startswith(".") and not p.endswith(".lock") for p in parts)
    )


BRANCHES = (
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=250
    )
    .map(lambda s: s.encode()[:250].decode(errors="ignore"))
    .filter(git_accepts)
)


def assert_label(label: str) -> None:
    assert len(label) <= naming.MAX_LABEL, label
    assert LABEL.match(label), label


def label(project: str, branch: str, component: str, scheme: str) -> str:
    """The host label of a new environment of this project and branch."""
    return naming.host_label(naming.env_key(project, branch), branch, component, scheme)


@settings(max_examples=400)
@given(branch=BRANCHES, component=COMPONENTS)
def test_every_branch_gives_dns_safe_labels_in_both_schemes(branch: str, component: str) -> None:
    key = naming.env_key("shop", branch)
    for scheme in ("slug", "hash"):
        assert_label(label("shop", branch, component, scheme))
        assert label("shop", branch, component, scheme) == naming.host_label(
            key, branch, component, scheme)
        host = naming.host(key, branch, component, scheme, "preview.example.com")
        assert all(LABEL.match(part) and len(part) <= 63 for part in host.split("."))
    assert_label(naming.object_name(component, key))
    for value in naming.labels(key, component).values():
        assert_label(value.replace("preview-portal", "x"))


@settings(max_examples=300)
@given(a=BRANCHES, b=BRANCHES, component=COMPONENTS)
def test_distinct_branches_get_distinct_names(a: str, b: str, component: str) -> None:
    if a == b:
        return
    assert naming.env_key("shop", a) != naming.env_key("shop", b)
    assert label("shop", a, component, "hash") != label("shop", b, component, "hash")
    assert label("shop", a, component, "slug") != label("shop", b, component, "slug")


@settings(max_examples=300)
@given(a=PROJECTS, b=PROJECTS, branch=BRANCHES, component=COMPONENTS)
def test_one_branch_of_distinct_projects_gets_distinct_names(a: str, b: str, branch: str,
                                                             component: str) -> None:
    if a == b:
        return
    assert naming.env_key(a, branch) != naming.env_key(b, branch)
    assert label(a, branch, component, "hash") != label(b, branch, component, "hash")
    assert label(a, branch, component, "slug") != label(b, branch, component, "slug")


def test_main_of_two_projects_gets_two_keys_and_two_hosts() -> None:
    assert naming.env_key("demo", "main") == "9568f72337d19678431013dc5d4c271c"  # md5("demo/main")
    assert naming.env_key("shop", "main") == "3807045f757dc01d5a742db21550e136"
    assert label("demo", "main", "web", "slug") == "main-9568f7-web"
    assert label("shop", "main", "web", "slug") == "main-380704-web"


def test_hosts_come_from_the_key_given_so_a_key_of_the_old_rule_keeps_the_seed_host() -> None:
    # The seed's host: md5 of the branch name alone, then the component.
    seed_key = "fad58de7366495db4650cfefac2fcd61"
    assert naming.host(seed_key, "main", "app1", "hash", "example.com") == (
        "fad58de7366495db4650cfefac2fcd61-app1.example.com"
    )
    assert naming.host(seed_key, "main", "app1", "slug", "example.com") == (
        "main-fad58d-app1.example.com"
    )


def test_lookalike_branches_stay_apart_in_the_readable_scheme() -> None:
    assert label("shop", "Feature/X", "web", "slug") != label("shop", "feature-x", "web", "slug")


def test_readable_scheme_keeps_the_branch_recognisable() -> None:
    readable = label("shop", "feature/ünïcode-✨", "web", "slug")
    assert readable.startswith("feature-unicode-")
    assert readable.endswith("-web")


def test_a_250_character_branch_is_cut_to_one_label() -> None:
    branch = "feature/" + "é" * 242
    long = label("a" * 30, branch, "component-with-long-name", "slug")
    assert_label(long)
    assert len(long) <= 63


def test_the_generator_only_makes_names_git_accepts() -> None:
    samples = ["feature/ünïcode-✨", "Fix/UPPER", "a" * 250, "émoji-😀/x"]
    for name in samples:
        assert git_accepts(name)
        done = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True)
        assert done.returncode == 0, name


def test_image_templates_are_filled_for_the_commit_branch_and_key() -> None:
    branch, key = "Feature/Ünïcode", "0123456789abcdef0123456789abcdef"
    assert naming.image("acme/web:{branch_slug}-{commit}", "abc123", branch, key) == \
        "acme/web:feature-unicode-abc123"
    # No tag given: the commit is the tag (a registry's port is not a tag).
    assert naming.image("registry:5000/web", "abc123", "main", key) == \
        "registry:5000/web:abc123"
    assert naming.image("acme/web:pinned", "abc123", "main", key) == "acme/web:pinned"
    # The key given (the environment's stored one), not one worked out from the branch again.
    assert naming.image("acme/web:{env_key}", "abc123", branch, key) == f"acme/web:{key}"
    with pytest.raises(ValueError, match="may only use"):
        naming.image("acme/web:{tag}", "abc123", "main", key)
