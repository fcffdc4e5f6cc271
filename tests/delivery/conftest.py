"""Delivery tests share the private Redis server and free ports of tests/support."""

from tests.support.network import free_port
from tests.support.redis_server import PrivateRedis

__all__ = ["PrivateRedis", "free_port"]
