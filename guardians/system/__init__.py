"""System protection: node-wide inbound QPS, concurrency, average RT, CPU and load (BBR)."""

from guardians.system.rule import SystemRule

__all__ = ["SystemRule"]
