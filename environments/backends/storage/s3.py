"""Production report storage: an S3 bucket (PORTAL_S3_BUCKET) through boto3, linked with
presigned URLs. Reports are served by S3, an origin other than the portal's, so no script in
one runs with the portal's cookies."""

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as S3Unreachable
from django.conf import settings

from environments.backends import BackendError
from environments.backends.storage import Reports

THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"}


class S3Reports(Reports):
    def __init__(self) -> None:
        self.bucket = settings.PORTAL_S3_BUCKET
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.AWS_ENDPOINT_URL or None,
            region_name=settings.AWS_REGION or None,
            config=Config(signature_version="s3v4", connect_timeout=5, read_timeout=30,
                          retries={"mode": "standard", "max_attempts": 3}),
        )

    def save(self, key: str, content: bytes, content_type: str) -> None:
        with self._errors("store", key):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=content, ContentType=content_type
            )

    def read(self, key: str) -> bytes:
        with self._errors("read", key):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def url(self, key: str) -> str:
        with self._errors("link", key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(settings.PORTAL_REPORT_LINK_HOURS * 3600),
            )

    @contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404"):
                raise BackendError(f"no report {key}") from exc
            raise BackendError(
                f"S3 refused to {what} s3://{self.bucket}/{key}: {code or status}",
                retryable=status >= 500 or code in THROTTLED,
            ) from exc
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
            raise BackendError(
                f"cannot {what} s3://{self.bucket}/{key}: {exc}",
                retryable=isinstance(exc, S3Unreachable | HTTPClientError),
            ) from exc
