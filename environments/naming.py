"""Branch names never reach DNS or Kubernetes raw: they become env keys, hosts and object names.

Every label produced here is 1-63 characters of [a-z0-9-], starting and ending alphanumeric.
Hosts, object names and image tags are made from an environment's stored key, never from its
branch again: the key rule changed once (DESIGN.md), and environments keep the key they got.
"""

import hashlib
import re
import unicodedata

MAX_LABEL = 63
SLUG_HASH_LEN = 6
K8S_KEY_LEN = 12
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def env_key(project: str, branch: str) -> str:
    """The key of a new environment: `main` of two projects gets two keys. (Project names
    hold no "/", so no two (project, branch) pairs share the hashed text.)"""
    return hashlib.md5(f"{project}/{branch}".encode(), usedforsecurity=False).hexdigest()


def slugify(branch: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")


def host_label(key: str, branch: str, component: str, scheme: str) -> str:
    if scheme == "hash":
        return f"{key}-{component}"
    room = MAX_LABEL - len(component) - SLUG_HASH_LEN - 2
    slug = slugify(branch)[:room].strip("-")
    return "-".join(part for part in (slug, key[:SLUG_HASH_LEN], component) if part)


def host(key: str, branch: str, component: str, scheme: str, base_domain: str) -> str:
    return f"{host_label(key, branch, component, scheme)}.{base_domain}"


def object_name(component: str, key: str) -> str:
    return f"{component}-{key[:K8S_KEY_LEN]}"


def labels(key: str, component: str | None = None) -> dict[str, str]:
    result = {"app.kubernetes.io/managed-by": "preview-portal", "preview-portal/environment": key}
    if component:
        result["preview-portal/component"] = component
    return result


def image(template: str, commit: str, branch: str, key: str) -> str:
    """A component's image for one commit: "{repository}:{commit}" style templates filled in.

    A template without placeholders and without a tag gets the commit as its tag, the way
    CI tags the images it pushes.
    """
    if not template:
        return ""
    if "{" not in template and ":" not in template.rsplit("/", 1)[-1]:
        template += ":{commit}"
    values = {
        "commit": commit, "branch_slug": slugify(branch)[:MAX_LABEL], "env_key": key
    }
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"image template {template!r} may only use {{commit}}, {{branch_slug}} and {{env_key}}"
        ) from exc
