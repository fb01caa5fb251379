"""Smoke checks: the configuration (config), the pytest suite run in a subprocess (suite/) and
the runner that starts it and reads its JUnit XML (runner)."""
