"""Authority rules: allow-list or deny-list of caller origins per resource (Sentinel's black/white list)."""

from guardians.authority.rule import AuthorityRule

__all__ = ["AuthorityRule"]
