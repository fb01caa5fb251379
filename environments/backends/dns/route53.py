"""Route53 (PORTAL_DNS=route53): each exposed host gets a record pointing at the ingress load
balancer; or, in wildcard mode, one `*.PORTAL_BASE_DOMAIN` record serves every environment.

boto3 finds credentials, region and AWS_ENDPOINT_URL (tests: a moto server) on its own.
Throttling (`Throttling`, `PriorRequestNotComplete`) is retried by botocore's standard retry
mode, with exponential backoff and jitter."""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    WaiterError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from environments.backends import BackendError
from environments.backends.dns import Dns, Log

# The canonical hosted zone of Application (and Classic) Load Balancers in each region, which
# an alias record names (https://docs.aws.amazon.com/general/latest/gr/elb.html).
ALB_HOSTED_ZONES = {
    "af-south-1": "Z268VQBMOI5EKX",
    "ap-east-1": "Z3DQVH9N71FHZ0",
    "ap-northeast-1": "Z14GRHDCWA56QT",
    "ap-northeast-2": "ZWKZPGTI48KDX",
    "ap-northeast-3": "Z5LXEXXYW11ES",
    "ap-south-1": "ZP97RAFLXTNZK",
    "ap-south-2": "Z0173938T07WNTVAEPZN",
    "ap-southeast-1": "Z1LMS91P8CMLE5",
    "ap-southeast-2": "Z1GM3OXH4ZPM65",
    "ap-southeast-3": "Z08888821HLRG5A9ZRTER",
    "ap-southeast-4": "Z09517862IB2WZLPXG76F",
    "ap-southeast-5": "Z06010284QMVVW7WO5J",
    "ap-southeast-7": "Z0390008CMBRTHFGWBCB",
    "ca-central-1": "ZQSVJUPU6J1EY",
    "ca-west-1": "Z06473681N0SF6OS049SD",
    "cn-north-1": "Z1GDH35T77C1KE",
    "cn-northwest-1": "ZM7IZAIOVVDZF",
    "eu-central-1": "Z215JYRZR1TBD5",
    "eu-central-2": "Z06391101F2ZOEP8P5EB3",
    "eu-north-1": "Z23TAZ6LKFMNIO",
    "eu-south-1": "Z3ULH7SSC9OV64",
    "eu-south-2": "Z0956581394HF5D5LXGAP",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-west-2": "ZHURV8PSTC4K8",
    "eu-west-3": "Z3Q77PNBQS71R4",
    "il-central-1": "Z09170902867EHPV2DABU",
    "me-central-1": "Z08230872XQRWHG2XF6I",
    "me-south-1": "ZS929ML54UICD",
    "mx-central-1": "Z023552324OKD1BB28BH5",
    "sa-east-1": "Z2P70J7HTTTPLU",
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-gov-east-1": "Z166TLBEWOO7G0",
    "us-gov-west-1": "Z33AYJ8TM3BH4J",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
}
# e.g. k8s-previews-0123abcd-1234567890.eu-west-1.elb.amazonaws.com (dualstack. in front, .cn
# behind in China); a network load balancer's name has ".elb.<region>." instead.
ALB_NAME = re.compile(
    r"(?:dualstack\.)?[a-z0-9-]+\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.elb\.amazonaws\.com"
    r"(?:\.cn)?\.?"
)
CNAME_TTL = 60
# The record types this backend writes (and so deletes).
OWN_TYPES = ("A", "AAAA", "CNAME")
RETRIES = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10,
                 read_timeout=30)
# Errors worth a later retry once botocore's own retries gave up.
RETRYABLE_CODES = frozenset({"Throttling", "PriorRequestNotComplete", "ServiceUnavailable",
                             "InternalFailure", "InternalError"})
SYNC_WAIT = {"Delay": 5, "MaxAttempts": 60}


class Route53Dns(Dns):
    def __init__(self) -> None:
        self.zone_id = settings.PORTAL_ROUTE53_ZONE_ID
        self.alias = settings.PORTAL_ROUTE53_RECORD == "alias"
        self.wildcard = settings.PORTAL_ROUTE53_WILDCARD
        self.wait = settings.PORTAL_ROUTE53_WAIT
        self.base_domain = settings.PORTAL_BASE_DOMAIN

    @cached_property
    def client(self) -> Any:
        return boto3.client("route53", config=RETRIES)

    def upsert(self, hosts: list[str], target: str | None, log: Log) -> None:
        if not target:
            raise BackendError("the runtime has no load balancer address yet (is the ingress "
                               "provisioned?)", retryable=True)
        names = [f"*.{self.base_domain}"] if self.wildcard else hosts
        if not names:
            log("no exposed component: no DNS record")
            return
        record = self.record_to(target)
        changes = [change for name in names for change in self._changes_for(name, record)]
        if not changes:  # a redeploy: nothing to change, nothing to wait for
            log(f"Route53: {', '.join(names)} point at {target} already")
            return
        change = self._change(changes)
        log(f"Route53: {', '.join(names)} → {target} ({_kind(record)})")
        if self.wait:
            self._wait(change)
            log("Route53: the change is in sync")

    def delete(self, hosts: list[str], log: Log) -> None:
        if self.wildcard:
            log(f"Route53 wildcard mode: *.{self.base_domain} is shared and stays")
            return
        # A DELETE must repeat the record exactly, and fails on one that is gone: so read first.
        found = [record for host in hosts for record in self._records_of(host)]
        if not found:
            log("Route53: no records to delete")
            return
        self._change([{"Action": "DELETE", "ResourceRecordSet": r} for r in found])
        log("Route53: deleted " + ", ".join(f"{r['Name']} {r['Type']}" for r in found))

    def records(self) -> list[str]:
        suffix = "." + self.base_domain
        hosts: set[str] = set()
        start: dict[str, str] = {}
        while True:
            answer = self._call(self.client.list_resource_record_sets,
                                HostedZoneId=self.zone_id, **start)
            hosts.update(_name(r) for r in answer["ResourceRecordSets"]
                         if r["Type"] in OWN_TYPES and _name(r).endswith(suffix))
            if not answer.get("IsTruncated"):
                return sorted(hosts)
            start = {"StartRecordName": answer["NextRecordName"],
                     "StartRecordType": answer["NextRecordType"]}

    def record_to(self, target: str) -> dict[str, Any]:
        """The record (less its name) pointing at the load balancer's address."""
        try:
            address = ipaddress.ip_address(target)
        except ValueError:
            pass
        else:  # an ingress that reports an IP (no ALB): a plain address record
            return {"Type": "A" if address.version == 4 else "AAAA", "TTL": CNAME_TTL,
                    "ResourceRecords": [{"Value": target}]}
        if not self.alias:
            return {"Type": "CNAME", "TTL": CNAME_TTL, "ResourceRecords": [{"Value": target}]}
        return {"Type": "A", "AliasTarget": {"HostedZoneId": alb_hosted_zone(target),
                                             "DNSName": target, "EvaluateTargetHealth": False}}

    def _changes_for(self, name: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        """What makes `name` point where `record` says: nothing when it does already; a record
        of another type (PORTAL_ROUTE53_RECORD changed) goes in the same atomic batch."""
        current = self._records_of(name)
        if any(_same(found, record) for found in current):
            return []
        stale = [{"Action": "DELETE", "ResourceRecordSet": found} for found in current
                 if found["Type"] != record["Type"]]
        return [*stale, {"Action": "UPSERT", "ResourceRecordSet": {"Name": name, **record}}]

    def _records_of(self, host: str) -> list[dict[str, Any]]:
        answer = self._call(self.client.list_resource_record_sets, HostedZoneId=self.zone_id,
                            StartRecordName=host, MaxItems="10")
        return [r for r in answer["ResourceRecordSets"]
                if _name(r) == host and r["Type"] in OWN_TYPES]

    def _change(self, changes: list[dict[str, Any]]) -> str:
        answer = self._call(self.client.change_resource_record_sets, HostedZoneId=self.zone_id,
                            ChangeBatch={"Comment": "preview-portal", "Changes": changes})
        return answer["ChangeInfo"]["Id"]

    def _wait(self, change_id: str) -> None:
        try:
            self.client.get_waiter("resource_record_sets_changed").wait(
                Id=change_id, WaiterConfig=SYNC_WAIT)
        except WaiterError as exc:
            raise BackendError(f"Route53 change {change_id} not in sync: {exc}",
                               retryable=True) from exc

    def _call(self, method: Any, **arguments: Any) -> dict[str, Any]:
        try:
            return method(**arguments)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            raise BackendError(f"Route53 {code}: {error.get('Message', exc)}",
                               retryable=code in RETRYABLE_CODES) from exc
        except BotoCoreError as exc:  # unreachable, timed out, no credentials
            raise BackendError(
                f"Route53: {exc}",
                retryable=isinstance(exc, BotoConnectionError | HTTPClientError),
            ) from exc


def alb_hosted_zone(name: str) -> str:
    found = ALB_NAME.fullmatch(name.lower())
    zone = ALB_HOSTED_ZONES.get(found["region"]) if found else None
    if zone is None:
        raise BackendError(
            f"{name} is not the DNS name of an Application Load Balancer in a known region, "
            "which an alias record needs (PORTAL_ROUTE53_RECORD=cname points at any name)")
    return zone


def _same(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if found["Type"] != wanted["Type"]:
        return False
    if "AliasTarget" in wanted:
        alias = found.get("AliasTarget", {})
        return (alias.get("HostedZoneId") == wanted["AliasTarget"]["HostedZoneId"]
                and _host(alias.get("DNSName", "")) == _host(wanted["AliasTarget"]["DNSName"]))
    values = [_host(r["Value"]) for r in found.get("ResourceRecords", [])]
    return (found.get("TTL") == wanted["TTL"]
            and values == [_host(r["Value"]) for r in wanted["ResourceRecords"]])


def _name(record: dict[str, Any]) -> str:
    # Route53 spells a name's * as \052.
    return record["Name"].replace("\\052", "*").rstrip(".")


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def _kind(record: dict[str, Any]) -> str:
    return "alias A" if "AliasTarget" in record else record["Type"]
