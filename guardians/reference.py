"""Regenerate or check the reference tables of guardians/RULES.md from ``guardians.schema``.

    python -m guardians.reference --write   # rewrite the generated blocks of RULES.md
    python -m guardians.reference           # exit 1 when RULES.md disagrees with the models
"""

from __future__ import annotations

import sys

from guardians.schema import RULES_MD, render_rules_md


def main(argv: list[str] | None = None) -> int:
    """``python -m guardians.reference --write`` regenerates RULES.md; ``--check`` fails when stale."""
    args = sys.argv[1:] if argv is None else argv
    text = RULES_MD.read_text()
    new = render_rules_md(text)
    if "--write" in args:
        RULES_MD.write_text(new)
        print(f"{RULES_MD}: {'updated' if new != text else 'up to date'}")
        return 0
    if new != text:
        print(f"{RULES_MD} disagrees with guardians/schema.py: run python -m guardians.reference --write")
        return 1
    print(f"{RULES_MD}: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
