"""Accounts: users and roles in the control DB, the throttled sign-in and sessions.

``AccountService`` (``accounts.service``) over ``UserStore`` (``accounts.store``), which also
keeps the console's server-side sessions (``user_sessions``: token hashes only); the role ×
action table and ``Principal`` / ``Forbidden`` / ``require`` come from ``common.identity``
(re-exported by ``accounts.roles``) so that ``alerts`` can enforce the same table.
Imports only ``common``, the standard library, SQLAlchemy, argon2-cffi and limits.
"""
