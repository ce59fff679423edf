"""The Redis key prefix fixture of the state tests (a prefix of the test's own, cleaned up after)."""

from tests.state.conftest import prefix  # noqa: F401 - a fixture, used by name
