"""The Route53 DNS backend against a moto server on loopback (real HTTP through boto3): records
with the right names and targets, idempotent, deleted at teardown; throttling retried."""

from collections.abc import Iterator

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from environments import naming, services
from environments.backends import BackendError, get
from environments.backends.dns.route53 import Route53Dns
from environments.backends.runtime.local import LocalRuntime
from environments.models import EnvironmentStatus, Interface
from tests.support.route53 import DOMAIN

ALB = "k8s-previews-0123abcd-1234567890.eu-west-1.elb.amazonaws.com"
EU_WEST_1_ALB_ZONE = "Z32O12XQLNTSW2"
HOSTS = [f"feature-x-abc123-web.{DOMAIN}", f"feature-x-abc123-api.{DOMAIN}"]
THROTTLED = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
             b"<Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>")


def records(zone: str) -> dict[tuple[str, str], dict]:
    """The zone's records by (name, type), less the SOA and NS every zone has. Route53 spells
    the * of a name as \\052 (moto does not): both read as *."""
    found = boto3.client("route53").list_resource_record_sets(HostedZoneId=zone)
    return {(r["Name"].replace("\\052", "*"), r["Type"]): r for r in found["ResourceRecordSets"]
            if r["Type"] not in ("SOA", "NS")}


def test_alias_records_point_each_host_at_the_alb_and_are_deleted(zone_id):
    lines: list[str] = []
    dns = Route53Dns()

    dns.upsert(HOSTS, ALB, lines.append)
    dns.upsert(HOSTS, ALB, lines.append)  # a repeated step changes nothing

    found = records(zone_id)
    assert set(found) == {(f"{host}.", "A") for host in HOSTS}
    for record in found.values():
        assert record["AliasTarget"]["HostedZoneId"] == EU_WEST_1_ALB_ZONE
        assert record["AliasTarget"]["DNSName"].rstrip(".") == ALB
    assert "Route53: the change is in sync" in lines
    assert lines[-1] == f"Route53: {', '.join(HOSTS)} point at {ALB} already"

    dns.delete(HOSTS, lines.append)
    dns.delete(HOSTS, lines.append)  # gone already: not an error

    assert records(zone_id) == {}
    assert lines[-1] == "Route53: no records to delete"


def test_cname_mode_and_ip_addresses(zone_id, settings):
    settings.PORTAL_ROUTE53_RECORD = "cname"
    dns = Route53Dns()

    dns.upsert(HOSTS[:1], "ingress.example.net", lambda _: None)
    dns.upsert(HOSTS[1:], "203.0.113.7", lambda _: None)
    found = records(zone_id)

    assert found[(f"{HOSTS[0]}.", "CNAME")]["ResourceRecords"] == [
        {"Value": "ingress.example.net"}]
    assert found[(f"{HOSTS[1]}.", "A")]["ResourceRecords"] == [{"Value": "203.0.113.7"}]

    dns.delete(HOSTS, lambda _: None)

    assert records(zone_id) == {}


def test_a_changed_record_kind_replaces_the_old_record(zone_id, settings):
    Route53Dns().upsert(HOSTS[:1], ALB, lambda _: None)
    settings.PORTAL_ROUTE53_RECORD = "cname"

    Route53Dns().upsert(HOSTS[:1], ALB, lambda _: None)

    assert set(records(zone_id)) == {(f"{HOSTS[0]}.", "CNAME")}


def test_wildcard_mode_keeps_one_shared_record(zone_id, settings):
    settings.PORTAL_ROUTE53_WILDCARD = True
    dns = Route53Dns()

    dns.upsert(HOSTS, ALB, lambda _: None)
    dns.delete(HOSTS, lambda _: None)

    assert set(records(zone_id)) == {(f"*.{DOMAIN}.", "A")}


@pytest.mark.parametrize(
    ("target", "retryable", "message"),
    [(None, True, "no load balancer address"),
     ("lb.example.net", False, "not the DNS name of an Application Load Balancer"),
     ("k8s-x-1.elb.eu-west-1.amazonaws.com", False, "PORTAL_ROUTE53_RECORD=cname")],
    ids=["no-address", "not-an-alb", "network-load-balancer"],
)
def test_an_alias_needs_an_alb_name(zone_id, target, retryable, message):
    with pytest.raises(BackendError) as error:
        Route53Dns().upsert(HOSTS, target, lambda _: None)

    assert error.value.retryable is retryable
    assert message in str(error.value)
    assert records(zone_id) == {}


def test_a_missing_zone_is_an_error_that_a_retry_does_not_fix(zone_id, settings):
    settings.PORTAL_ROUTE53_ZONE_ID = "ZNOSUCHZONE"

    with pytest.raises(BackendError) as error:
        Route53Dns().upsert(HOSTS, ALB, lambda _: None)

    assert "NoSuchHostedZone" in str(error.value)
    assert error.value.retryable is False


def test_throttling_is_retried_with_backoff(zone_id):
    dns = Route53Dns()
    attempts: list[str] = []

    def throttle_first(request, **kwargs) -> AWSResponse | None:
        attempts.append(request.url)
        if len(attempts) == 1:
            return AWSResponse(request.url, 400, {}, _Raw(THROTTLED))
        return None  # sent to the server

    dns.client.meta.events.register(
        "before-send.route53.ChangeResourceRecordSets", throttle_first)
    dns.upsert(HOSTS[:1], ALB, lambda _: None)

    assert len(attempts) == 2
    assert set(records(zone_id)) == {(f"{HOSTS[0]}.", "A")}


class _Raw:
    """The raw body of a made-up HTTP answer, as botocore reads it."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **kwargs) -> Iterator[bytes]:
        yield self.content


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_writes_and_deletes_the_records_of_an_environment(
        zone_id, demo_project, pool_of, developer, monkeypatch):
    """Through the deploy and teardown steps. The local runtime has no load balancer (which is
    why settings refuse route53 with it), so its address is given the name of one here."""
    monkeypatch.setattr(LocalRuntime, "address", lambda self, target: ALB)
    assert type(get("dns")) is Route53Dns
    pool_of(1)

    environment = services.launch(demo_project, "main", actor=developer,
                                  interface=Interface.WEB)
    environment.refresh_from_db()
    hosts = {naming.host(environment.env_key, "main", c, "slug", DOMAIN) for c in ("web", "api")}

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert set(records(zone_id)) == {(f"{host}.", "A") for host in hosts}

    services.teardown(environment, actor=developer, interface=Interface.WEB)

    assert records(zone_id) == {}
