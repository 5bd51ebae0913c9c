"""``tradeguard alerts …``: list, acknowledge, resolve and silence alerts; manage alert rules; on-call.

    tradeguard alerts list [--state firing,pending] [--json]
    tradeguard alerts show ID [--json]                      # one alert's timeline
    tradeguard alerts ack ID --by NAME [--comment TEXT]     # also: unack, resolve
    tradeguard alerts escalate ID --by NAME [--to-step N]   # notify the next escalation step now
    tradeguard alerts silence --match label=value [--match …] --for 1h --by NAME --comment TEXT
    tradeguard alerts silences [--all] [--json]  |  alerts expire SILENCE_ID --by NAME
    tradeguard alerts rules list [--json] | rules apply -f FILE [--prune]
    tradeguard alerts rules validate -f FILE | rules export
    tradeguard alerts rules schema                          # JSON Schema of an alert rule file
    tradeguard alerts rules history [--json] | rules rollback VERSION --by NAME --why TEXT
    tradeguard alerts oncall [--json]  |  alerts history [--json]

Everything goes through ``alerts.service.AlertService`` over the control DB
(``TRADEGUARD_CONTROL_DB``); the worker (``tradeguard worker``) evaluates and notifies.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from alerts.errors import AlertConfigError, AlertError
from alerts.schema import json_schema
from alerts.service import AlertService
from tradeguard.settings import load_settings


def _service() -> AlertService:
    from tradeguard.bootstrap import open_alert_service

    return open_alert_service(load_settings())


def _by(args: argparse.Namespace) -> str:
    return args.by or getpass.getuser()


def _print(data: Any) -> None:
    print(json.dumps(data, indent=None, default=str))


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[str(r.get(key, "") if r.get(key) is not None else "") for key, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def _list(svc: AlertService, args: argparse.Namespace) -> int:
    states = tuple(s.strip() for s in args.state.split(",") if s.strip())
    alerts = svc.list_alerts(states, limit=args.limit)
    if args.json:
        _print(alerts)
        return 0
    for a in alerts:
        a["labels_text"] = ",".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k != "alertname")
        flags = []
        if a["acknowledged"]:
            flags.append(f"ack:{a['acknowledged_by']}")
        if a["silenced_by"]:
            flags.append("silenced")
        if a["inhibited"]:
            flags.append("inhibited")
        a["flags"] = " ".join(flags)
        a["since"] = (a["fired_at"] or a["active_since"] or "")[:19]
        a["value"] = f"{a['value']:.4g}" if isinstance(a["value"], float) else a["value"]
    _table(
        alerts,
        [
            ("id", "ID"),
            ("state", "STATE"),
            ("rule", "RULE"),
            ("severity", "SEVERITY"),
            ("since", "SINCE"),
            ("value", "VALUE"),
            ("flags", "FLAGS"),
            ("labels_text", "LABELS"),
        ],
    )
    return 0


def _show(svc: AlertService, args: argparse.Namespace) -> int:
    t = svc.timeline(args.id)
    if args.json:
        _print(t)
        return 0
    a = t["alert"]
    print(f"alert {a['id']} {a['rule']} [{a['state']}] {a['summary']}")
    print("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())))
    for e in t["events"]:
        who = f" by {e['by']}" if e["by"] else ""
        print(f"  {e['at'][:19]}  {e['kind']}{who}  {e['detail'] or ''}")
    for n in t["notifications"]:
        print(
            f"  notification {n['id']} via {n['channel']} ({n['reason']}): {n['status']}, "
            f"{n['attempts']} attempt(s){' — ' + n['last_error'] if n['last_error'] else ''}"
        )
    return 0


def _ack(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.acknowledge(args.id, _by(args), args.comment))
    return 0


def _unack(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.unacknowledge(args.id, _by(args)))
    return 0


def _resolve(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.resolve(args.id, _by(args), args.comment))
    return 0


def _escalate(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.escalate(args.id, _by(args), args.to_step))
    return 0


def _silence(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.create_silence(args.match, created_by=_by(args), comment=args.comment, duration=args.duration))
    return 0


def _silences(svc: AlertService, args: argparse.Namespace) -> int:
    rows = svc.silences(include_expired=args.all)
    if args.json:
        _print(rows)
        return 0
    for r in rows:
        r["matchers_text"] = " ".join(r["matchers"])
        r["ends"] = r["ends_at"][:19]
    _table(
        rows,
        [
            ("id", "ID"),
            ("status", "STATUS"),
            ("matchers_text", "MATCHERS"),
            ("ends", "ENDS"),
            ("created_by", "BY"),
            ("comment", "COMMENT"),
        ],
    )
    return 0


def _expire(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.expire_silence(args.id, _by(args)))
    return 0


def _rules_list(svc: AlertService, args: argparse.Namespace) -> int:
    rules = svc.rules()
    if args.json:
        _print(rules)
        return 0
    for r in rules:
        q = r.get("query") or {}
        what = q.get("field") or ("ratio" if "ratio" in q else r.get("kind", ""))
        r["expr"] = (
            f"{q.get('aggregate', '')}({q.get('measurement', r.get('kind', ''))}.{what}) "
            f"{r.get('op')} {r.get('threshold')}"
            if q
            else f"{r.get('kind')} {r.get('op')} {r.get('threshold')}"
        )
        r["open_text"] = f"{r['open']['firing']} firing, {r['open']['pending']} pending"
    _table(
        rules,
        [
            ("name", "NAME"),
            ("enabled", "ENABLED"),
            ("severity", "SEVERITY"),
            ("for", "FOR"),
            ("expr", "CONDITION"),
            ("open_text", "OPEN"),
        ],
    )
    return 0


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _rules_apply(svc: AlertService, args: argparse.Namespace) -> int:
    _print(svc.apply(_read(args.file), by=_by(args), prune=args.prune, why=args.why))
    return 0


def _rules_validate(svc: AlertService, args: argparse.Namespace) -> int:
    errors = svc.validate(_read(args.file))
    if args.json:
        _print(errors)
    elif errors:
        for e in errors:
            print(f"{e['field']}: {e['message']}", file=sys.stderr)
    else:
        print("valid")
    return 1 if errors else 0


def _rules_export(svc: AlertService, args: argparse.Namespace) -> int:
    sys.stdout.write(svc.export())
    return 0


def _rules_history(svc: AlertService, args: argparse.Namespace) -> int:
    rows = svc.rule_history(limit=args.limit)
    if args.json:
        _print(rows)
        return 0
    for r in rows:
        d = r["diff"]
        r["changes"] = f"+{len(d.get('added', []))} ~{len(d.get('changed', []))} -{len(d.get('removed', []))}"
    _table(
        rows,
        [
            ("version", "VERSION"),
            ("created_at", "AT"),
            ("created_by", "BY"),
            ("rules", "RULES"),
            ("changes", "CHANGES"),
            ("restored_from", "RESTORED FROM"),
            ("why", "WHY"),
        ],
    )
    return 0


def _rules_rollback(svc: AlertService, args: argparse.Namespace) -> int:
    out = svc.rollback_rules(args.version, by=_by(args), why=args.why or "")
    _print({k: out[k] for k in ("version", "restored_from", "created_by", "why", "rules", "diff")})
    return 0


def _rules_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of an alert document, for editors (YAML language server) and CI; no DB needed."""
    print(json.dumps(json_schema(), indent=2))
    return 0


def _oncall(svc: AlertService, args: argparse.Namespace) -> int:
    rows = svc.on_call_now()
    if args.json:
        _print(rows)
        return 0
    _table(
        rows,
        [
            ("rotation", "ROTATION"),
            ("name", "ON CALL"),
            ("email", "EMAIL"),
            ("override", "OVERRIDE"),
            ("shift_end", "UNTIL"),
        ],
    )
    return 0


def _history(svc: AlertService, args: argparse.Namespace) -> int:
    rows = svc.history(limit=args.limit)
    if args.json:
        _print(rows)
        return 0
    _table(
        rows,
        [
            ("id", "ID"),
            ("rule", "RULE"),
            ("state", "STATE"),
            ("fired_at", "FIRED"),
            ("resolved_at", "RESOLVED"),
            ("acknowledged_by", "ACK BY"),
            ("summary", "SUMMARY"),
        ],
    )
    return 0


def _run(func):
    def handler(args: argparse.Namespace) -> int:
        svc = _service()
        try:
            return func(svc, args)
        except AlertConfigError as exc:
            for path, msg in exc.errors:
                print(f"tradeguard alerts: {path}: {msg}", file=sys.stderr)
            return 2
        except (AlertError, ValueError, OSError) as exc:
            print(f"tradeguard alerts: {exc}", file=sys.stderr)
            return 1
        finally:
            svc.close()

    return handler


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("alerts", help="list, acknowledge, silence alerts; alert rules; who is on call")
    sub = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    def by(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--by", default=None, help="who acts (default: the OS user)")

    s = sub.add_parser("list", help="open alerts (firing and pending by default)")
    s.add_argument("--state", default="firing,pending", help="comma list of firing, pending, resolved")
    s.add_argument("--limit", type=int, default=500)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_list))

    s = sub.add_parser("show", help="one alert's timeline: transitions, acks, notifications")
    s.add_argument("id", type=int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_show))

    for name, func, helptext in (
        ("ack", _ack, "acknowledge: stops escalation and repeats"),
        ("unack", _unack, "take an acknowledgement back"),
        ("resolve", _resolve, "resolve by hand"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("id", type=int)
        by(s)
        if name != "unack":
            s.add_argument("--comment", default=None)
        s.set_defaults(func=_run(func))

    s = sub.add_parser("escalate", help="escalate a firing alert now: notify the next step of its policy")
    s.add_argument("id", type=int)
    by(s)
    s.add_argument(
        "--to-step", type=int, default=None, help="the step to notify, 1-based (default: the next)"
    )
    s.set_defaults(func=_run(_escalate))

    s = sub.add_parser("silence", help="silence alerts matching every --match for a while")
    s.add_argument(
        "--match",
        action="append",
        required=True,
        metavar="LABEL=VALUE",
        help="label=value, label!=value, label=~regex or label!~regex (repeatable)",
    )
    s.add_argument("--for", dest="duration", required=True, help="how long, e.g. 30m, 1h, 2d")
    s.add_argument("--comment", required=True, help="why")
    by(s)
    s.set_defaults(func=_run(_silence))

    s = sub.add_parser("silences", help="active and pending silences")
    s.add_argument("--all", action="store_true", help="include expired ones")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_silences))

    s = sub.add_parser("expire", help="end a silence now")
    s.add_argument("id", type=int)
    by(s)
    s.set_defaults(func=_run(_expire))

    s = sub.add_parser("oncall", help="who is on call now, per rotation")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_oncall))

    s = sub.add_parser("history", help="alerts that fired, newest first")
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_history))

    r = sub.add_parser("rules", help="alert rules: list, apply, validate, export, schema")
    rsub = r.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    s = rsub.add_parser("list", help="every alert rule")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_rules_list))
    s = rsub.add_parser(
        "apply", help="apply a YAML/JSON alert document (rules by name, other sections whole)"
    )
    s.add_argument("-f", "--file", required=True, help="file, or - for stdin")
    s.add_argument("--prune", action="store_true", help="delete rules the document does not name")
    s.add_argument("--why", default="", help="the reason, kept in the rule history")
    by(s)
    s.set_defaults(func=_run(_rules_apply))
    s = rsub.add_parser("validate", help="check a document; errors name the field")
    s.add_argument("-f", "--file", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_rules_validate))
    s = rsub.add_parser("export", help="rules and configuration as YAML")
    s.set_defaults(func=_run(_rules_export))
    s = rsub.add_parser("schema", help="print the JSON Schema of an alert rule file (for editors and CI)")
    s.set_defaults(func=_rules_schema)
    s = rsub.add_parser("history", help="versions of the alert rules: who, when, why, what changed")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_run(_rules_history))
    s = rsub.add_parser("rollback", help="restore the rules of an earlier version (as a new version)")
    s.add_argument("version", type=int)
    s.add_argument("--why", default="", help="the reason, kept in the rule history")
    by(s)
    s.set_defaults(func=_run(_rules_rollback))
