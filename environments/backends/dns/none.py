from environments.backends.dns import Dns, Log


class NoDns(Dns):
    """No records: the URL is whatever the runtime serves (a local port or the ingress host)."""

    def upsert(self, hosts: list[str], target: str | None, log: Log) -> None:
        log("DNS backend 'none': no records to write, URLs are served by the runtime")

    def delete(self, hosts: list[str], log: Log) -> None:
        log("DNS backend 'none': no records to delete")

    def records(self) -> list[str]:
        return []
