"""CLI subcommands: every module here exposes ``register(subparsers)`` (discovered by ``tradeguard.cli``)."""
