"""Hot-parameter flow control: per-value limits on one argument, built on the ``limits`` library."""

from guardians.param.rule import ParamRule

__all__ = ["ParamRule"]
