"""Runtime: where an environment's components run (local processes or Kubernetes)."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

Log = Callable[[str], None]


def url_variable(component: str) -> str:
    """The variable that tells each component (and the smoke suite) where `component` is."""
    return "PREVIEW_URL_" + component.upper().replace("-", "_")


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
    def inventory(self) -> dict[str, list[str]]:
        """What this runtime holds, per environment key, as lines naming each thing; the
        reconciler deletes (with `delete`) what no live environment owns."""
