"""Runtime: where an environment's components run (local processes or Kubernetes)."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

Log = Callable[[str], None]


def url_variable(component: str) -> str:
    """The variable that tells each component (and the smoke suite) where `component` is."""
    return "PREVIEW_URL_" + component.upper().replace("-", "_")


def public_url_variable(component: str) -> str:
    """Where a browser reaches `component`, where that differs from where its peers do."""
    return "PREVIEW_PUBLIC_URL_" + component.upper().replace("-", "_")


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    image: str  # resolved: the project's template filled in for this commit
    port: int
    health_paths: tuple[str, ...]
    start_command: str
    exposed: bool
    host: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Everything a runtime needs to run one environment; built by the pipeline."""

    env_key: str
    project: str
    repository: str
    branch: str
    commit: str
    components: tuple[ComponentSpec, ...]
    env: dict[str, str] = field(default_factory=dict)
    # The slot's DB values: a runtime keeps them out of anything it shows (Kubernetes: a Secret).
    secret_env: dict[str, str] = field(default_factory=dict)
    base_manifests: str = ""
    # A database that is files on this machine (the sqlite pool): the directory they are in.
    database_directory: str = ""


@dataclass(frozen=True)
class SuiteRun:
    """One attempt of an environment's smoke suite: branch code, run where the runtime runs
    branch code (never in the portal's process)."""

    env_key: str
    name: str  # unique per run and attempt, e.g. smoke-12-2
    files: dict[str, bytes]  # path in the suite -> content: the checks, the project's tests
    # A Python's arguments (a Python with pytest), in the suite's folder; its last line of output
    # is the result.
    python_args: tuple[str, ...]
    environ: dict[str, str]
    timeout: int
    image: str = ""  # where the runtime runs it in a container
    # A database that is files on this machine: the suite may write there (its database check).
    database_directory: str = ""


class Runtime(ABC):
    @abstractmethod
    def render(self, target: Target) -> str:
        """What apply will create, as text for the environment page."""

    @abstractmethod
    def apply(self, target: Target, log: Log) -> None:
        """Make the components run at target.commit; leave alone what already does."""

    @abstractmethod
    def wait_ready(self, target: Target, log: Log, timeout: float) -> dict[str, str]:
        """Wait until every component is ready; return the URL of each exposed component."""

    @abstractmethod
    def address(self, target: Target) -> str | None:
        """The load balancer address DNS records should point at, if the runtime has one."""

    @abstractmethod
    def delete(self, env_key: str, log: Log) -> None:
        """Remove everything of the environment; not an error when it is already gone."""

    @abstractmethod
    def logs(self, env_key: str, component: str, lines: int = 200) -> str: ...

    @abstractmethod
    def component_states(self, env_key: str) -> dict[str, str]:
        """A short state per component ("running ...", "exited ..."), so a dead one shows."""

    @abstractmethod
    def suite_urls(self, env_key: str, components: list[str], urls: dict[str, str]
                   ) -> dict[str, str]:
        """Where the smoke suite reaches each component (given the environment's public URLs)."""

    @abstractmethod
    def run_suite(self, suite: SuiteRun, log: Log) -> str:
        """Run one attempt and return its output; an attempt that cannot start is an error."""

    @abstractmethod
    def inventory(self) -> dict[str, list[str]]:
        """What this runtime holds, per environment key, as lines naming each thing; the
        reconciler deletes (with `delete`) what no live environment owns."""
