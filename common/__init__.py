"""Small pieces every tradeguard package shares: the bottom layer, importing nothing of the project.

Only what must be one copy across packages that may not import each other (``domain`` and
``guardians`` are independent) lives here: secret redaction (``redact``), the clock (``clock``) and
the percentile of every report and store (``stats``).
"""
