"""The trading core: orders, pricing, promotions, inventory, limits, payment, refunds.

Imports nothing of the rest of tradeguard. The model and services do no I/O; they
record domain events (``domain.events``) and call ports (``domain.ports``).
"""
