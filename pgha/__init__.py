"""pgha: a PostgreSQL high-availability failover manager."""

__version__ = "0.1.0"
