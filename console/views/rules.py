"""Rules: view, edit (form or YAML), validate, diff, impact preview, apply, history, rollback.

Not live (an editor must not move under the cursor). A run reads the version in force
once (1 rule-store read) and the known resources (1 metric-store query: resources with traffic in
the last hour, plus the trading core's); the History tab adds 1 read; each impact preview shown adds
1 metric-store query (the form's selected rule, plus at most 3 changed flow/param rules
on the Review tab). Session state holds the draft document and the last errors only —
replaced, never appended to.
"""

from __future__ import annotations

import copy
from typing import Any

import streamlit as st
import yaml

from console.rule_forms import (
    FIELDS,
    OTHER_RESOURCE,
    RESOURCE_FIELDS,
    FieldSpec,
    controlling_fields,
    errors_for,
    hidden_fields,
    label,
    proposal_from_rule,
    resource_options,
    rule_from_values,
    table_rows,
    unknown_resource_warning,
    yaml_line,
)
from console.runtime import chart, services
from console.services import (
    RULE_TYPES,
    FieldError,
    RuleDocumentInvalid,
    RuleVersionView,
    document_yaml,
    unified_diff,
)
from console.services.common import error_text
from dashboards import figures

IMPACT_MINUTES = (5, 10, 15, 30, 60)
MAX_REVIEW_PREVIEWS = 3

ss = st.session_state
svc = services()
st.title("Rules")

try:
    current: RuleVersionView | None = svc.rules_in_force()
except Exception as exc:  # the control DB is down: say so, nothing else works here
    st.error(f"The rule store cannot be read: {error_text(exc)}")
    st.stop()


known_errors: list[str] = []
known: list[str] = svc.known_resources(known_errors)


def _canon(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v not in (None, [], {})}


def reset_draft(to: RuleVersionView | None) -> None:
    ss.rules_draft = copy.deepcopy(to.document) if to else {}
    ss.rules_base = to.version if to else None
    ss.rules_base_doc = copy.deepcopy(to.document) if to else {}
    ss.rules_gen = ss.get("rules_gen", 0) + 1
    ss.rules_form_errors = []
    ss.rules_yaml_errors = []
    ss.rules_apply_errors = []
    ss.pop("rules_pick", None)


in_force_version = current.version if current else None
if "rules_draft" not in ss:
    reset_draft(current)
elif ss.rules_base != in_force_version and _canon(ss.rules_draft) == _canon(ss.rules_base_doc):
    reset_draft(current)  # someone applied a new version and this draft has no edits: follow it

draft: dict[str, Any] = ss.rules_draft
gen: int = ss.rules_gen
dirty = _canon(draft) != _canon(current.document if current else {})

if msg := ss.pop("rules_flash", None):
    st.success(msg, icon=":material/check_circle:")
if current is None:
    st.info(
        "**No rules applied yet.** Write a rule document below (form or YAML) and apply it.",
        icon=":material/edit_note:",
    )
else:
    when = f" at {current.at:%Y-%m-%d %H:%M:%S} UTC" if current.at else ""
    st.markdown(
        f"**Version {current.version} in force**, applied by **{current.by or '?'}**{when}"
        + (f" — _{current.why}_" if current.why else "")
    )
if ss.rules_base != in_force_version:
    st.warning(
        f"Version {in_force_version} was applied after you started this draft (from version "
        f"{ss.rules_base}). Review the diff before applying, or discard your draft.",
        icon=":material/warning:",
    )
if dirty:
    st.caption(":material/edit: The draft has changes that are not applied yet — see **Review & apply**.")

# Tab labels stay constant: a changed label would make a new tab bar and jump back to the first tab.
# keyed: the selected tab survives the reruns of saving a draft (else it jumps back to the first)
tab_view, tab_form, tab_yaml, tab_apply, tab_history = st.tabs(
    ["In force", "Edit (form)", "Edit (YAML)", "Review & apply", "History"], key="rules_tab"
)


# ------------------------------------------------------------------ helpers
def widget(spec: FieldSpec, value: Any, key: str) -> Any:
    label_text = spec.name + (" *" if spec.required else "")
    if spec.kind == "select":
        options = list(spec.options)
        if value is not None and value not in options:
            options.append(value)
        index = (
            options.index(value)
            if value in options
            else (options.index(spec.default) if spec.default in options else None)
        )
        return st.selectbox(
            label_text, options, index=index, key=key, help=spec.help, placeholder="(default)"
        )
    if spec.kind == "bool":
        return st.checkbox(label_text, value=bool(value), key=key, help=spec.help)
    if spec.kind in ("number", "int"):
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = int(value) if spec.kind == "int" else float(value)
        step = 1 if spec.kind == "int" else None
        return st.number_input(
            label_text,
            value=number,
            step=step,
            key=key,
            help=spec.help,
            placeholder="(default)" if not spec.required else "required",
            format=None if spec.kind == "int" else "%g",
        )
    if spec.kind == "mapping":
        text = "" if not value else yaml.safe_dump(value, default_flow_style=True, width=200).strip()
        return st.text_input(label_text, value=text, key=key, help=spec.help, placeholder="{}")
    return st.text_input(label_text, value="" if value is None else str(value), key=key, help=spec.help)


def resource_widget(spec: FieldSpec, value: Any, key: str) -> str | None:
    """A known resource from a list, or "other…" and a typed name (warned about when unknown)."""
    options = resource_options(known, value if isinstance(value, str) else None)
    index = options.index(value) if value in options else None
    choice = st.selectbox(
        spec.name + (" *" if spec.required else ""),
        options,
        index=index,
        key=key,
        help=f"{spec.help} · resources with recorded traffic and the trading core's; "
        f"{OTHER_RESOURCE} to type another",
        placeholder="pick a resource",
    )
    if choice != OTHER_RESOURCE:
        return choice
    typed = st.text_input(f"{spec.name}: other name", key=f"{key}_other", placeholder="e.g. GET /products")
    warning = unknown_resource_warning(typed or "", known)
    if warning:
        st.warning(warning, icon=":material/warning:")
    return typed


def _rule_brief(kind: str, rule: dict[str, Any]) -> str:
    if kind == "param":
        return f"≤ {rule.get('threshold')} per {rule.get('param')} value / {rule.get('duration_s', 1)} s"
    return f"{rule.get('grade', 'qps')} ≤ {rule.get('threshold')}" + (
        " (cluster)" if rule.get("cluster") else ""
    )


def impact_block(kind: str, rule: dict[str, Any], key: str, minutes: int, hot_share: float) -> None:
    resource = rule.get("resource")
    proposal, why_not = proposal_from_rule(kind, rule, hot_share=hot_share)
    if proposal is None or not resource:
        st.caption(f"No impact preview: {why_not or 'the rule names no resource'}.")
        return
    try:
        result = svc.impact(str(resource), proposal, minutes)
    except Exception as exc:
        st.warning(f"Impact preview unavailable: {error_text(exc)}")
        return
    title = f"{resource}: last {minutes} min replayed against {_rule_brief(kind, rule)}"
    if result.has_traffic:
        c = st.columns(4)
        c[0].metric("Offered calls", f"{result.offered:,}", help="passed + blocked, as recorded")
        c[1].metric(
            "Would block",
            f"{result.would_block:,}",
            f"{100 * result.block_share:.1f} %",
            delta_color="inverse",
        )
        c[2].metric("Blocked by rules in force", f"{result.blocked_now:,}")
        c[3].metric("Seconds with blocks", f"{result.seconds_blocking} / {len(result.seconds)}")
        for note in result.notes:
            st.caption(note)
    chart(figures.impact_figure(result, title=title), key)


# ------------------------------------------------------------------ In force
with tab_view:
    doc = current.document if current else {}
    if not any(doc.get(k) for k in RULE_TYPES):
        st.caption("No rules in force.")
    for kind in RULE_TYPES:
        rules = doc.get(kind) or []
        st.markdown(f"**{kind}** ({len(rules)})")
        if rules:
            st.dataframe(table_rows(rules, kind), hide_index=True, key=f"view_{kind}")

# ------------------------------------------------------------------ Form
with tab_form:
    pick = ss.pop("rules_pick", None)
    if pick is not None:
        ss[f"form_kind_{gen}"] = pick[0]
        ss[f"form_idx_{pick[0]}_{gen}"] = pick[1]
    kind = st.selectbox("Rule type", RULE_TYPES, key=f"form_kind_{gen}")
    rules = list(draft.get(kind) or [])
    options = [*range(len(rules)), -1]
    idx = st.selectbox(
        "Rule",
        options,
        key=f"form_idx_{kind}_{gen}",
        format_func=lambda i: "+ new rule" if i < 0 else label(kind, i, rules[i]),
    )
    rule = dict(rules[idx]) if idx is not None and idx >= 0 else {}
    at = idx if idx is not None and idx >= 0 else len(rules)
    per_field, rest = errors_for(ss.rules_form_errors, kind, at)

    def key_of(name: str) -> str:
        return f"fld_{kind}_{idx}_{gen}_{name}"

    # Fields that decide which others apply are drawn outside the form (a change re-draws it at once);
    # their value is the widget's when drawn before, else the rule's.
    steering = controlling_fields(kind)
    hidden = hidden_fields(kind, {n: ss.get(key_of(n), rule.get(n)) for n in steering})
    for name in hidden:
        rest += [f"{kind}[{at}].{name}: {m}" for m in per_field.pop(name, [])]
    shown = [spec for spec in FIELDS[kind] if spec.name not in hidden]
    outer = [spec for spec in shown if spec.name in RESOURCE_FIELDS or spec.name in steering]
    inner = [spec for spec in shown if spec not in outer]
    values: dict[str, Any] = {}

    def draw(spec: FieldSpec) -> None:
        key = key_of(spec.name)
        if spec.name in RESOURCE_FIELDS:
            values[spec.name] = resource_widget(spec, rule.get(spec.name), key)
        else:
            values[spec.name] = widget(spec, rule.get(spec.name), key=key)
        for message in per_field.get(spec.name, []):
            st.error(message, icon=":material/error:")

    top = st.columns(3)
    for j, spec in enumerate(outer):
        with top[j % 3]:
            draw(spec)
    if hidden:
        st.caption(f"Not shown, as they do not apply with these choices: {', '.join(sorted(hidden))}.")
    with st.form(f"rule_form_{kind}_{idx}_{gen}", border=True):
        cols = st.columns(3)
        for j, spec in enumerate(inner):
            with cols[j % 3]:
                draw(spec)
        for message in rest:
            st.error(message, icon=":material/error:")
        b1, b2, _ = st.columns([2, 2, 4])
        save = b1.form_submit_button("Save to draft & validate", type="primary")
        remove = b2.form_submit_button("Remove from draft", disabled=idx is None or idx < 0)
    if save or remove:
        new_draft = copy.deepcopy(draft)
        bucket = list(new_draft.get(kind) or [])
        local: list[FieldError] = []
        if save:
            mapping_values = dict(values)
            for spec in FIELDS[kind]:
                if spec.kind == "mapping" and isinstance(values.get(spec.name), str):
                    text = values[spec.name].strip()
                    try:
                        mapping_values[spec.name] = yaml.safe_load(text) if text else None
                    except yaml.YAMLError:
                        local.append(
                            FieldError(f"{kind}[{at}].{spec.name}", "not valid YAML: write {value: n, …}")
                        )
                        mapping_values[spec.name] = None
            new_rule = rule_from_values(kind, mapping_values, rule)
            if idx is None or idx < 0:
                bucket.append(new_rule)
            else:
                bucket[idx] = new_rule
            ss.rules_pick = (kind, at)
        else:
            bucket.pop(idx)
            ss.rules_pick = (kind, -1 if not bucket else min(idx, len(bucket) - 1))
        new_draft[kind] = bucket
        ss.rules_draft = new_draft
        ss.rules_form_errors = local + svc.validate(new_draft)
        st.rerun()
    if ss.rules_form_errors:
        st.error(
            f"The draft has {len(ss.rules_form_errors)} error(s); it cannot be applied until they are fixed."
        )
    if kind in ("flow", "param") and rule:
        st.subheader("Impact preview")
        c1, c2 = st.columns([3, 2])
        minutes = c1.select_slider(
            "Replay the last",
            IMPACT_MINUTES,
            value=10,
            key="impact_minutes",
            format_func=lambda m: f"{m} min",
        )
        hot = 1.0
        if kind == "param":
            hot = c2.slider(
                "Share of the traffic on the hottest value",
                0.05,
                1.0,
                1.0,
                0.05,
                key="impact_hot",
                help="1.0 = worst case: every call carries the same value",
            )
        impact_block(kind, rule, "impact_form", minutes, hot)
    if kind == "flow":  # threshold suggestion from the recorded traffic (console/views/suggest_block.py)
        from console.views.suggest_block import suggest_block

        def use_suggestion(grade: str, threshold: float, keys=(key_of("grade"), key_of("threshold"))) -> None:
            """Into this rule's form widgets (a button callback: it runs before the next run draws them)."""
            ss[keys[0]] = grade
            ss[keys[1]] = threshold

        suggest_block(svc, values.get("resource") or rule.get("resource"), "suggest_form", use_suggestion)

# ------------------------------------------------------------------ YAML
with tab_yaml:
    text_now = document_yaml(draft)
    text = st.text_area(
        "Rule document (YAML or JSON)", value=text_now, height=420, key=f"yaml_{gen}_{abs(hash(text_now))}"
    )
    c1, c2, _ = st.columns([1, 1, 4])
    check = c1.button("Validate", key="yaml_validate")
    use = c2.button("Use as draft", type="primary", key="yaml_use")
    if check or use:
        parsed, errors = svc.parse_yaml(text or "")
        ss.rules_yaml_errors = [(e, yaml_line(text or "", e.path)) for e in errors]
        if use and parsed is not None and not errors:
            ss.rules_draft = parsed
            ss.rules_form_errors = []
            ss.rules_flash = "The YAML is now the draft — review and apply it."
            st.rerun()
        if not errors:
            st.success("Valid rule document.", icon=":material/check_circle:")
    for error, line in ss.rules_yaml_errors:
        where = f"line {line} · " if line else ""
        st.error(f"{where}`{error.path or 'document'}`: {error.message}", icon=":material/error:")

# ------------------------------------------------------------------ Review & apply
with tab_apply:
    diff = svc.diff(draft, current=current)
    st.subheader(f"Draft against version {in_force_version} in force" if current else "Draft (no rules yet)")
    if diff:
        st.code(diff, language="diff")
    else:
        st.info("The draft is the version in force: nothing to apply.")
    problems = svc.validate(draft)
    for e in known_errors:
        st.caption(f"Known resources incomplete ({e}).")
    unknown = sorted(
        {
            str(r.get(f))
            for k in RULE_TYPES
            for r in draft.get(k) or []
            if isinstance(r, dict)
            for f in RESOURCE_FIELDS
            if r.get(f) and r.get(f) not in known
        }
    )
    for name in unknown:
        st.warning(unknown_resource_warning(name, known) or name, icon=":material/warning:")
    if problems:
        st.error(
            "**The draft is invalid** — fix these first:\n\n"
            + "\n".join(f"- `{e.path or 'document'}`: {e.message}" for e in problems)
        )
    elif diff:
        st.success("The draft is valid.", icon=":material/check_circle:")
    old = current.document if current else {}
    changed = [(k, r) for k in ("flow", "param") for r in draft.get(k) or [] if r not in (old.get(k) or [])]
    if changed and not problems:
        st.subheader("Impact preview of the changed rules (last 10 min)")
        for i, (k, r) in enumerate(changed[:MAX_REVIEW_PREVIEWS]):
            impact_block(k, dict(r), f"impact_review_{i}", 10, 1.0)
        if len(changed) > MAX_REVIEW_PREVIEWS:
            st.caption(f"{len(changed) - MAX_REVIEW_PREVIEWS} more changed rules: preview them on the form.")
    apply_errors = {e.path: e.message for e in ss.rules_apply_errors}
    with st.form("apply_form"):
        st.caption(f"Recorded as **{svc.principal.name}** (signed in).")
        why = st.text_area(
            "Reason *", key="apply_why", height=80, placeholder="why: e.g. flash sale at 20:00"
        )
        if "why" in apply_errors:
            st.error(apply_errors["why"], icon=":material/error:")
        others = [f"`{p}`: {m}" for p, m in apply_errors.items() if p != "why"]
        if others:
            st.error("Not applied:\n\n" + "\n".join(f"- {o}" for o in others))
        next_version = (in_force_version or 0) + 1
        submitted = st.form_submit_button(
            f"Apply as version {next_version}", type="primary",
            disabled=not diff or bool(problems) or not svc.may("rules.apply"),
        )
        if no_apply := svc.refusal("rules.apply"):
            st.caption(f":material/lock: Read-only: {no_apply}.")
    if submitted:
        try:
            version = svc.apply(draft, why or "")
        except RuleDocumentInvalid as exc:
            ss.rules_apply_errors = exc.errors
            st.rerun()
        except Exception as exc:
            st.error(f"Apply failed: {error_text(exc)}")
        else:
            reset_draft(svc.rules_in_force())
            if version == in_force_version:
                ss.rules_flash = f"Nothing changed: the draft equals version {version}, which stays in force."
            else:
                ss.rules_flash = f"Version {version} applied. Nodes pick it up within 2 s."
            st.rerun()
    if dirty and st.button("Discard draft", key="discard_draft"):
        reset_draft(current)
        st.rerun()

# ------------------------------------------------------------------ History
with tab_history:
    try:
        history = svc.history()
    except Exception as exc:
        history = []
        st.error(f"History cannot be read: {error_text(exc)}")
    if not history:
        st.caption("No versions yet.")
    else:
        st.dataframe(
            [
                {
                    "version": v.version,
                    "in force": "●" if v.version == in_force_version else "",
                    "applied (UTC)": f"{v.at:%Y-%m-%d %H:%M:%S}" if v.at else "",
                    "by": v.by,
                    "why": v.why + (f" (rollback to v{v.restored_from})" if v.restored_from else ""),
                }
                for v in history[:100]
            ],
            hide_index=True,
            key="history_table",
        )
        chosen = st.selectbox(
            "Version",
            [v.version for v in history],
            key="history_pick",
            format_func=lambda n: f"version {n}" + (" (in force)" if n == in_force_version else ""),
        )
        picked = next(v for v in history if v.version == chosen)
        before = next((v for v in history if v.version < chosen), None)
        change = unified_diff(
            _canon(before.document) if before else {},
            _canon(picked.document),
            f"version {before.version}" if before else "nothing",
            f"version {chosen}",
        )
        st.markdown(f"**Changes made by version {chosen}**")
        st.code(change or "(no change)", language="diff")
        with st.expander(f"Whole document of version {chosen}"):
            st.code(document_yaml(picked.document), language="yaml")
        offered = ss.pop("rollback_offer", None)  # what the last run offered to roll back
        if chosen != in_force_version:
            in_force_doc = _canon(current.document) if current else {}
            rb_diff = unified_diff(
                in_force_doc,
                _canon(picked.document),
                f"version {in_force_version} (in force)" if current else "no rules",
                f"version {chosen} (restored)",
            )
            st.markdown(f"**Rolling back to version {chosen} changes the rules in force like this**")
            if rb_diff:
                st.code(rb_diff, language="diff")
                old_rules = current.document if current else {}
                back = [
                    (k, r)
                    for k in ("flow", "param")
                    for r in picked.document.get(k) or []
                    if r not in (old_rules.get(k) or [])
                ]
                if back:
                    st.markdown("**Impact preview of the restored rules (last 10 min)**")
                    for i, (k, r) in enumerate(back[:MAX_REVIEW_PREVIEWS]):
                        impact_block(k, dict(r), f"impact_rollback_{i}", 10, 1.0)
            else:
                st.info(
                    f"Version {chosen}'s rules are the rules in force: nothing to roll back.",
                    icon=":material/check_circle:",
                )
            rb_errors = {e.path: e.message for e in ss.get("rules_rollback_errors", [])}
            with st.form("rollback_form"):
                st.markdown(f"Roll back: version {chosen}'s rules become a new version in force.")
                st.caption(f"Recorded as **{svc.principal.name}** (signed in).")
                rb_why = st.text_input("Reason *", key="rollback_why")
                if "why" in rb_errors:
                    st.error(rb_errors["why"], icon=":material/error:")
                rb = st.form_submit_button(
                    f"Roll back to version {chosen}", type="primary",
                    disabled=not rb_diff or not svc.may("rules.rollback"),
                )
                if no_rb := svc.refusal("rules.rollback"):
                    st.caption(f":material/lock: Read-only: {no_rb}.")
            offer = (chosen, in_force_version)
            if rb and offered is not None and offered != offer:
                st.error(
                    f"Not rolled back: the rules in force changed (now version {in_force_version}) "
                    "since this rollback was shown. Review the diff above and roll back again if it is "
                    "still right.",
                    icon=":material/error:",
                )
            elif rb and rb_diff:
                try:
                    version = svc.rollback(chosen, rb_why or "")
                except RuleDocumentInvalid as exc:
                    ss.rules_rollback_errors = exc.errors
                    ss.rollback_offer = offer
                    st.rerun()
                except Exception as exc:
                    st.error(f"Rollback failed: {error_text(exc)}")
                else:
                    ss.rules_rollback_errors = []
                    for k in ("history_pick", "rollback_why"):
                        ss.pop(k, None)  # the form is done: the picker shows the version now in force
                    reset_draft(svc.rules_in_force())
                    ss.rules_flash = f"Rolled back: version {version} now has the rules of version {chosen}."
                    st.rerun()
            ss.rollback_offer = offer
