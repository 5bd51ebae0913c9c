"""``tradeguard rules …``: the versioned guardians rule documents in the control DB.

    tradeguard rules list [--json]                          # the rules in force, one per line
    tradeguard rules show [--version N] [--json]            # a whole document (YAML by default)
    tradeguard rules apply -f FILE --by NAME --why TEXT     # validate + store as a new version
    tradeguard rules diff -f FILE                           # what apply would change
    tradeguard rules validate -f FILE                       # check a document, store nothing
    tradeguard rules history [--json]
    tradeguard rules rollback VERSION --by NAME --why TEXT  # a new version with VERSION's content
    tradeguard rules schema                                 # the JSON Schema of a rule document
    tradeguard rules suggest RESOURCE [--range 24h] [--json] # QPS/concurrency thresholds from the knee
    tradeguard rules canary start -f FILE (--nodes I1[,I2] | --share 0.25) --by NAME --why TEXT
                                  [--metric error_pct --margin 5 --no-auto]
    tradeguard rules canary status [--window 10m] [--json]   # canary vs rest; auto-rollback on a breach
    tradeguard rules canary promote|abort --by NAME --why TEXT

``--app`` (default: settings' app, "tradeguard") picks the application. FILE is YAML
or JSON (``-`` reads stdin). Invalid documents are reported per field and exit 2.
Nodes pick a new version up within about 2 s (their rule watcher polls every second).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from guardians.errors import RuleValidationError
from guardians.rules import RULE_TYPES, dump_yaml, load_text, parse_document
from guardians.store import RuleStore, VersionNotFound

EXIT_INVALID = 2


def _store() -> RuleStore:
    from tradeguard.bootstrap import open_rule_store
    from tradeguard.settings import load_settings

    return open_rule_store(load_settings())


def _read(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return load_text(text)


def _invalid(exc: RuleValidationError) -> int:
    print(
        f"invalid rule document ({len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}):",
        file=sys.stderr,
    )
    for path, message in exc.errors:
        print(f"  {path}: {message}", file=sys.stderr)
    return EXIT_INVALID


def _rule_line(kind: str, rule: dict[str, Any]) -> dict[str, Any]:
    skip = {"name", "resource"}
    detail = " ".join(f"{k}={v}" for k, v in rule.items() if k not in skip)
    return {
        "type": kind,
        "name": rule.get("name", ""),
        "resource": rule.get("resource", "*"),
        "detail": detail,
    }


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def _print_diff(diff: dict[str, Any]) -> None:
    if not diff:
        print("no changes")
        return
    for kind in RULE_TYPES:
        if kind not in diff:
            continue
        for r in diff[kind]["removed"]:
            print(f"- {kind}: {json.dumps(r, sort_keys=True)}")
        for r in diff[kind]["added"]:
            print(f"+ {kind}: {json.dumps(r, sort_keys=True)}")


# --------------------------------------------------------------------------- handlers
def cmd_list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        cur = store.current(args.app)
    finally:
        store.close()
    if cur is None:
        if args.json:
            print(json.dumps({"app": args.app, "version": None, "rules": []}))
        else:
            print(
                f"app {args.app}: no rules stored yet (tradeguard rules apply -f FILE --by NAME --why TEXT)"
            )
        return 0
    rows = [_rule_line(kind, r) for kind in RULE_TYPES for r in cur.document.get(kind, [])]
    if args.json:
        print(json.dumps({"app": args.app, "version": cur.version, "rules": rows}))
        return 0
    print(f"app {args.app} v{cur.version} by {cur.created_by} at {cur.created_at.isoformat()}: {cur.why}")
    _table(rows, ["type", "name", "resource", "detail"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = _store()
    try:
        rv = store.version(args.app, args.version) if args.version else store.current(args.app)
    except VersionNotFound as exc:
        print(f"tradeguard rules show: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if rv is None:
        print(f"app {args.app}: no rules stored yet", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**rv.summary(), "document": rv.document}, default=str))
    else:
        print(f"# app {args.app} v{rv.version} by {rv.created_by} at {rv.created_at.isoformat()}: {rv.why}")
        print(dump_yaml(rv.document), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        rs = parse_document(_read(args.file))
    except RuleValidationError as exc:
        return _invalid(exc)
    print(f"valid: {len(rs)} rules")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    store = _store()
    try:
        diff = store.diff(args.app, _read(args.file))
    except RuleValidationError as exc:
        return _invalid(exc)
    finally:
        store.close()
    if args.json:
        print(json.dumps(diff))
    else:
        _print_diff(diff)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    store = _store()
    try:
        document = _read(args.file)
        before = store.current_version(args.app)
        diff = store.diff(args.app, document)
        version = store.apply(args.app, document, args.by or getpass.getuser(), args.why)
    except RuleValidationError as exc:
        return _invalid(exc)
    except ValueError as exc:
        print(f"tradeguard rules apply: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        store.close()
    if args.json:
        print(json.dumps({"app": args.app, "version": version, "changed": version != before, "diff": diff}))
    elif version == before:
        print(f"unchanged: app {args.app} stays at v{version}")
    else:
        _print_diff(diff)
        print(f"applied: app {args.app} v{version} (nodes pick it up within ~2 s)")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    store = _store()
    try:
        versions = store.history(args.app, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([v.summary() for v in versions], default=str))
        return 0
    rows = []
    for v in versions:
        changes = (
            ", ".join(f"{k} +{len(d['added'])}/-{len(d['removed'])}" for k, d in v.diff.items())
            or "no rule changes"
        )
        restored = f" (restores v{v.restored_from})" if v.restored_from else ""
        rows.append(
            {
                "version": v.version,
                "at": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "by": v.created_by,
                "why": v.why + restored,
                "changes": changes,
            }
        )
    _table(rows, ["version", "at", "by", "why", "changes"])
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    store = _store()
    try:
        version = store.rollback(
            args.app, args.version, args.by or getpass.getuser(), args.why or f"rollback to v{args.version}"
        )
    except VersionNotFound as exc:
        print(f"tradeguard rules rollback: {exc}", file=sys.stderr)
        return 1
    except RuleValidationError as exc:  # a stored version that no longer validates
        return _invalid(exc)
    except ValueError as exc:
        print(f"tradeguard rules rollback: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        store.close()
    if args.json:
        print(json.dumps({"app": args.app, "version": version, "restored_from": args.version}))
    else:
        print(f"rolled back: app {args.app} v{version} has the content of v{args.version}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of a rule document (from guardians.schema), for editors and CI."""
    from guardians.schema import document_json_schema

    print(json.dumps(document_json_schema(), indent=2))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    """Threshold suggestion from the recorded traffic (``dashboards.suggest``): JSON with ``qps`` and
    ``concurrency`` proposals and the evidence, or ``suggestion: null`` with the ``reason``."""
    from datetime import UTC, datetime

    from common.durations import parse_duration
    from console.services import rules as rules_svc
    from tradeguard.bootstrap import open_metric_store
    from tradeguard.settings import load_settings

    try:
        range_s = int(parse_duration(args.range).total_seconds())
        if not 0 < range_s <= 7 * 86400:
            raise ValueError(f"--range must be from 1 s to 7d, got {args.range!r}")
        if not 0 <= args.margin < 1:
            raise ValueError(f"--margin must be in [0, 1), got {args.margin!r}")
    except ValueError as exc:
        print(f"tradeguard rules suggest: {exc}", file=sys.stderr)
        return EXIT_INVALID
    metrics = open_metric_store(load_settings())
    try:
        result, preview = rules_svc.suggest(
            metrics, args.app, args.resource, range_s, datetime.now(UTC), margin=args.margin
        )
    finally:
        metrics.close()
    out = {"app": args.app, "range_s": range_s, **result.to_dict(),
           "impact": rules_svc.impact_summary(preview)}
    if args.json:
        print(json.dumps(out))
        return 0
    if result.suggestion is None:
        print(f"no suggestion for {args.resource}: {result.reason}")
        return 0
    sg = result.suggestion
    print(f"{args.resource}: {result.reason}")
    print(f"  flow rule (qps):         threshold {sg.qps}/s per node")
    print(f"  flow rule (concurrency): threshold {sg.concurrency} per node")
    if preview is not None and preview.has_traffic:
        print(f"  impact over the last {len(preview.seconds)} s with traffic: would block "
              f"{preview.would_block} of {preview.offered} calls ({preview.block_share:.1%})")
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """``rules canary start|status|promote|abort`` (guardians.store canary + tradeguard.canary check)."""
    from datetime import UTC, datetime

    from guardians.fleet import LIVE
    from guardians.store import CanaryError
    from tradeguard import canary as canary_check
    from tradeguard.bootstrap import open_fleet, open_metric_store
    from tradeguard.settings import load_settings

    store = _store()
    try:
        if args.canary_command == "start":
            targets = [n for n in (args.nodes or "").split(",") if n.strip()]
            if args.share is not None:
                fleet = open_fleet(load_settings())
                try:
                    live = [n.instance for n in fleet.nodes() if n.state == LIVE]
                finally:
                    fleet.close()
                targets = canary_check.pick_share(live, args.share)
            guard = {"metric": args.metric, "margin": args.margin, "auto": not args.no_auto,
                     "min_calls": args.min_calls}
            c = store.start_canary(args.app, _read(args.file), targets, args.by or getpass.getuser(),
                                   args.why, guard)
            out: dict[str, Any] = c.to_dict()
            text = (f"canary {c.id} started on {', '.join(c.targets)} (on v{c.base_version}); "
                    f"auto-rollback when {c.guard['metric']} worsens by > {c.guard['margin']:g}"
                    if c.guard["auto"] else f"canary {c.id} started on {', '.join(c.targets)}")
        elif args.canary_command == "status":
            from common.durations import parse_duration

            metrics = open_metric_store(load_settings())
            try:
                window = parse_duration(args.window).total_seconds() if args.window else None
                out = canary_check.check(store, metrics, args.app, datetime.now(UTC), window_s=window)
            finally:
                metrics.close()
            c_d = out.get("canary")
            if c_d is None:
                text = f"app {args.app}: no canary"
            else:
                text = (f"canary {c_d['id']} {c_d['state']} on {', '.join(c_d['targets'])} "
                        f"(on v{c_d['base_version']}{', STALE' if out.get('stale') else ''})")
                cmp = out.get("comparison")
                if cmp:
                    text += "\n  " + cmp["verdict"]
                    for side in ("canary", "rest"):
                        text += f"\n  {side}: " + json.dumps(cmp[side])
                if out.get("auto_rolled_back"):
                    text += "\n  AUTO-ROLLED BACK"
        elif args.canary_command == "promote":
            c = store.promote_canary(args.app, args.by or getpass.getuser(), args.why, force=args.force)
            text = f"canary {c.id} promoted: app {args.app} v{c.promoted_version} on every node"
            out = c.to_dict()
        else:
            c = store.abort_canary(args.app, args.by or getpass.getuser(), args.why)
            out, text = c.to_dict(), f"canary {c.id} aborted: its nodes go back to the version in force"
    except RuleValidationError as exc:
        return _invalid(exc)
    except ValueError as exc:  # CanaryError is a ValueError
        print(f"tradeguard rules canary {args.canary_command}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CanaryError) else EXIT_INVALID
    finally:
        store.close()
    print(json.dumps(out, default=str) if args.json else text)
    return 0


def register(subparsers: Any) -> None:
    _, default_app = _default_app()
    p = subparsers.add_parser(
        "rules",
        help="guardians rule documents: list, show, apply, diff, history, rollback, schema",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="rules_command", required=True)

    def common(sp: argparse.ArgumentParser, *, json_flag: bool = True) -> argparse.ArgumentParser:
        sp.add_argument("--app", default=default_app, help=f"application (default {default_app})")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    common(sub.add_parser("list", help="the rules in force")).set_defaults(func=cmd_list)
    sp = common(sub.add_parser("show", help="a whole rule document (YAML; --json for JSON)"))
    sp.add_argument("--version", type=int, default=None, help="a past version (default: current)")
    sp.set_defaults(func=cmd_show)
    sp = common(sub.add_parser("apply", help="validate and store a document as a new version"))
    sp.add_argument("-f", "--file", required=True, help="YAML or JSON rule document ('-': stdin)")
    sp.add_argument("--by", required=True, help="who makes the change")
    sp.add_argument("--why", required=True, help="why (kept in the history)")
    sp.set_defaults(func=cmd_apply)
    sp = common(sub.add_parser("diff", help="what applying a document would change"))
    sp.add_argument("-f", "--file", required=True, help="YAML or JSON rule document ('-': stdin)")
    sp.set_defaults(func=cmd_diff)
    sp = common(sub.add_parser("validate", help="validate a document without storing it"), json_flag=False)
    sp.add_argument("-f", "--file", required=True, help="YAML or JSON rule document ('-': stdin)")
    sp.set_defaults(func=cmd_validate)
    sp = common(sub.add_parser("history", help="every version: who, when, why, what changed"))
    sp.add_argument("--limit", type=int, default=50)
    sp.set_defaults(func=cmd_history)
    sp = common(sub.add_parser("rollback", help="restore a version (as a new version)"))
    sp.add_argument("version", type=int, help="the version whose content to restore")
    sp.add_argument("--by", required=True, help="who makes the change")
    sp.add_argument("--why", default="", help="why (default: 'rollback to vN')")
    sp.set_defaults(func=cmd_rollback)
    sp = common(sub.add_parser("suggest", help="suggest QPS/concurrency thresholds from recorded traffic"))
    sp.add_argument("resource", help="the guarded resource, e.g. order.place or 'POST /orders'")
    sp.add_argument("--range", default="24h", help="recorded traffic to read (up to 7d; default 24h)")
    sp.add_argument("--margin", type=float, default=0.2, help="safety margin below the knee (default 0.2)")
    sp.set_defaults(func=cmd_suggest)
    cp = sub.add_parser("canary", help="roll a rule document out to some nodes first")
    csub = cp.add_subparsers(dest="canary_command", required=True)
    sp = common(csub.add_parser("start", help="run a document on named nodes (or a share) first"))
    sp.add_argument("-f", "--file", required=True, help="YAML or JSON rule document ('-': stdin)")
    sp.add_argument("--nodes", default="", help="instances, comma separated")
    sp.add_argument("--share", type=float, default=None, help="or a share of the live fleet, e.g. 0.25")
    sp.add_argument("--by", required=True, help="who makes the change")
    sp.add_argument("--why", required=True, help="why (kept in the audit)")
    sp.add_argument("--metric", default="error_pct", help="guard metric: error_pct, blocked_pct, p99_ms")
    sp.add_argument("--margin", type=float, default=5.0, help="roll back when the canary is worse by more")
    sp.add_argument("--min-calls", type=int, default=20, help="canary calls needed before judging")
    sp.add_argument("--no-auto", action="store_true", help="never roll back automatically")
    sp.set_defaults(func=cmd_canary)
    sp = common(csub.add_parser("status", help="canary vs the rest (and auto-rollback on a breach)"))
    sp.add_argument("--window", default=None, help="compare over the last DURATION (default: since start)")
    sp.set_defaults(func=cmd_canary)
    for name, what in (("promote", "store the canary as the next version for every node"),
                       ("abort", "roll back: the canary's nodes return to the version in force")):
        sp = common(csub.add_parser(name, help=what))
        sp.add_argument("--by", default="", help="who makes the change (default: your login name)")
        sp.add_argument("--why", default=f"{name}d by hand", help="why (kept in the audit)")
        if name == "promote":
            sp.add_argument("--force", action="store_true", help="promote even if the canary is stale")
        sp.set_defaults(func=cmd_canary)
    sp = sub.add_parser("schema", help="print the JSON Schema of a rule document (for editors and CI)")
    sp.set_defaults(func=cmd_schema)


def _default_app() -> tuple[None, str]:
    try:
        from tradeguard.settings import load_settings

        return None, load_settings().app or "tradeguard"
    except Exception:
        return None, os.environ.get("TRADEGUARD_APP", "tradeguard")
