"""The one role × action table: allowed / refused with a clear message, through ``require`` and the
account service (``users.manage``)."""

from __future__ import annotations

import pytest

from accounts.roles import ACTIONS, PERMISSIONS, ROLES, Forbidden, Principal, allowed, require, visible_shops

ADMIN = Principal("ann", "admin")
SRE = Principal("sam", "sre")
ONCALL = Principal("olly", "oncall")
BOB = Principal("bob", "merchant", ("shop-a",))

# role → actions it may do (written out by hand from the issue, not derived from PERMISSIONS)
EXPECTED = {
    "admin": set(ACTIONS),
    "sre": set(ACTIONS) - {"users.manage"},
    "oncall": {"ops.read", "alerts.ack", "alerts.silence", "alerts.resolve", "oncall.set", "alerts.rules"},
    "merchant": {"sales.read"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_role_and_action(role, action):
    who = Principal("x", role, ("shop-a",) if role == "merchant" else ())
    if action in EXPECTED[role]:
        require(who, action)
        assert allowed(who, action)
    else:
        with pytest.raises(Forbidden) as info:
            require(who, action)
        message = str(info.value)
        assert message.startswith(f"user x ({role}) may not {ACTIONS[action]}; needs role ")
        for r in ROLES:
            assert (f" {r}" in message.split("needs role", 1)[1]) == (action in EXPECTED[r])
        assert info.value.action == action and info.value.role == role


def test_the_issue_s_example_message():
    with pytest.raises(Forbidden) as info:
        require(BOB, "rules.apply")
    assert str(info.value) == "user bob (merchant) may not apply rules; needs role sre or admin"


def test_a_merchant_reads_only_its_own_shops():
    require(BOB, "sales.read", "shop-a")
    with pytest.raises(Forbidden, match=r"may not read sales of shop shop-b; bound to shops: shop-a"):
        require(BOB, "sales.read", "shop-b")
    for who in (SRE, ADMIN):
        require(who, "sales.read", "shop-b")
    with pytest.raises(Forbidden):
        require(ONCALL, "sales.read", "shop-a")
    assert visible_shops(BOB, ["shop-a", "shop-b"]) == ["shop-a"]
    assert visible_shops(SRE, ["shop-a", "shop-b"]) == ["shop-a", "shop-b"]


def test_unknown_action_and_role_are_errors_not_refusals():
    with pytest.raises(ValueError, match=r"unknown action 'rules\.delete'"):
        require(ADMIN, "rules.delete")
    with pytest.raises(ValueError, match="role must be one of admin, sre, oncall, merchant"):
        Principal("x", "root")
    assert set(PERMISSIONS) == set(ROLES)


@pytest.mark.parametrize("who", [SRE, ONCALL, BOB])
def test_only_an_admin_manages_users_through_the_service(service, who):
    service.add_user("first", "admin", "correct horse", by="cli")
    with pytest.raises(Forbidden) as info:
        service.add_user("eve", "sre", "correct horse", by=who)
    assert str(info.value) == f"user {who.name} ({who.role}) may not manage users; needs role admin"
    with pytest.raises(Forbidden):
        service.disable("first", by=who)
    assert service.store.get("eve") is None
    service.add_user("eve", "sre", "correct horse", by=ADMIN)
    assert service.get_user("eve").role == "sre"
    assert service.store.audit("eve")[0]["actor"] == "ann"
