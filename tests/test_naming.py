"""Any branch name git accepts becomes DNS-safe, deterministic, distinct names."""

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from environments import naming

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
COMPONENTS = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?\Z")
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


@settings(max_examples=400)
@given(branch=BRANCHES, component=COMPONENTS)
def test_every_branch_gives_dns_safe_labels_in_both_schemes(branch: str, component: str) -> None:
    for scheme in ("slug", "hash"):
        label = naming.host_label(branch, component, scheme)
        assert_label(label)
        assert naming.host_label(branch, component, scheme) == label
        host = naming.host(branch, component, scheme, "preview.example.com")
        assert all(LABEL.match(part) and len(part) <= 63 for part in host.split("."))
    assert_label(naming.object_name(component, naming.env_key(branch)))
    for value in naming.labels(naming.env_key(branch), component).values():
        assert_label(value.replace("preview-portal", "x"))


@settings(max_examples=300)
@given(a=BRANCHES, b=BRANCHES, component=COMPONENTS)
def test_distinct_branches_get_distinct_names(a: str, b: str, component: str) -> None:
    if a == b:
        return
    assert naming.env_key(a) != naming.env_key(b)
    assert naming.host_label(a, component, "hash") != naming.host_label(b, component, "hash")
    assert naming.host_label(a, component, "slug") != naming.host_label(b, component, "slug")


def test_lookalike_branches_stay_apart_in_the_readable_scheme() -> None:
    assert naming.host_label("Feature/X", "web", "slug") != naming.host_label(
        "feature-x", "web", "slug"
    )


def test_hash_scheme_matches_the_seed() -> None:
    # The seed's host: md5 of the branch name, then the component.
    assert naming.host("main", "app1", "hash", "example.com") == (
        "fad58de7366495db4650cfefac2fcd61-app1.example.com"
    )


def test_readable_scheme_keeps_the_branch_recognisable() -> None:
    label = naming.host_label("feature/ünïcode-✨", "web", "slug")
    assert label.startswith("feature-unicode-")
    assert label.endswith("-web")


def test_a_250_character_branch_is_cut_to_one_label() -> None:
    branch = "feature/" + "é" * 242
    label = naming.host_label(branch, "component-with-long-name", "slug")
    assert_label(label)
    assert len(label) <= 63


def test_the_generator_only_makes_names_git_accepts() -> None:
    samples = ["feature/ünïcode-✨", "Fix/UPPER", "a" * 250, "émoji-😀/x"]
    for name in samples:
        assert git_accepts(name)
        done = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True)
        assert done.returncode == 0, name


def test_image_templates_are_filled_for_the_commit_and_branch() -> None:
    branch = "Feature/Ünïcode"
    assert naming.image("acme/web:{branch_slug}-{commit}", "abc123", branch) == \
        "acme/web:feature-unicode-abc123"
    # No tag given: the commit is the tag (a registry's port is not a tag).
    assert naming.image("registry:5000/web", "abc123", "main") == "registry:5000/web:abc123"
    assert naming.image("acme/web:pinned", "abc123", "main") == "acme/web:pinned"
    assert naming.image("acme/web:{env_key}", "abc123", branch) == \
        f"acme/web:{naming.env_key(branch)}"
    with pytest.raises(ValueError, match="may only use"):
        naming.image("acme/web:{tag}", "abc123", "main")
