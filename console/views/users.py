"""Users (admin): list, add, disable / enable, reset a password. Every change is audited by the
account service as the signed-in admin; a password is never shown again nor kept in session state."""

from __future__ import annotations

import streamlit as st

from common.identity import ROLES, Forbidden
from console.runtime import services
from console.services.common import error_text

svc = services()
st.title("Users")

if msg := st.session_state.pop("users_flash", None):
    st.success(msg, icon=":material/check_circle:")

try:
    users = svc.list_users()
except Forbidden as exc:
    st.error(f"**Not allowed.** {error_text(exc)}.", icon=":material/block:")
    st.stop()


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


st.dataframe(
    [
        {
            "name": u.name,
            "role": u.role,
            "shops": ", ".join(u.shops),
            "disabled": "yes" if u.disabled else "",
            "last login": _when(u.last_login_at),
        }
        for u in users
    ],
    hide_index=True,
)


def _done(fn, message: str) -> None:
    try:
        fn()
    except Exception as exc:  # AccountError names the field; Forbidden names the role needed
        st.error(str(exc), icon=":material/error:")
    else:
        st.session_state.users_flash = message
        st.rerun()


add, change = st.columns(2)
with add, st.form("user_add", clear_on_submit=True):
    st.markdown("**Add a user**")
    name = st.text_input("Name", key="user_add_name")
    role = st.selectbox("Role", ROLES, index=list(ROLES).index("oncall"), key="user_add_role")
    shops = st.text_input("Shops (merchant only, comma-separated)", key="user_add_shops")
    password = st.text_input("Password", type="password", key="user_add_password")
    submitted = st.form_submit_button("Add user", type="primary")
if submitted:
    bound = [s.strip() for s in (shops or "").split(",") if s.strip()]
    _done(lambda: svc.add_user(name or "", role, password or "", bound), f"User {name} added as {role}.")

names = [u.name for u in users]
with change, st.form("user_change"):
    st.markdown("**Change a user**")
    who = st.selectbox("User", names, key="user_change_name")
    new_password = st.text_input("New password (for reset)", type="password", key="user_change_password")
    b = st.columns(3)
    disable = b[0].form_submit_button("Disable")
    enable = b[1].form_submit_button("Enable")
    reset = b[2].form_submit_button("Reset password")
if who and disable:
    _done(lambda: svc.disable_user(who), f"User {who} disabled.")
if who and enable:
    _done(lambda: svc.enable_user(who), f"User {who} enabled.")
if who and reset:
    _done(lambda: svc.set_password(who, new_password or ""), f"Password of {who} reset.")
