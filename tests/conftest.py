"""Shared fixtures: real etcd and real PostgreSQL servers, started and stopped by PID."""

pytest_plugins = ["tests.fixtures.etcd", "tests.fixtures.postgres", "tests.fixtures.cluster"]
