"""The hosted zone the Route53 tests (conftest's zone_id) make on moto."""

DOMAIN = "preview.example.com"
