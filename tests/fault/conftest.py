"""The fault tests use the TUI tests' engine and observer fixtures (tests/integration/conftest.py)."""

from tests.integration.conftest import engine, observer

__all__ = ["engine", "observer"]
