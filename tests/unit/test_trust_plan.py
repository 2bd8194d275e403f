"""`TrustPlan`'s changes to the trust store, as data, before the charm applies them."""

from __future__ import annotations

from state import TrustPlan, Wanted


def entry(fingerprint: str, role: str, origin: str) -> dict:
    return {"fingerprint": fingerprint, "role": role, "origin": origin}


def test_changes_add_missing_fix_roles_and_remove_only_the_relations_own_entries():
    plan = TrustPlan(
        wanted={
            fp: Wanted(fp, role, f"PEM {fp}", f"relation {role}:1 ams/0", "ams/0")
            for fp, role in (("new", "client"), ("moved", "publisher"), ("same", "client"))
        }
    )
    trusted = {
        "moved": entry("moved", "client", "relation client:1 ams/0"),
        "same": entry("same", "client", "relation client:1 ams/0"),
        "gone": entry("gone", "client", "relation client:2 ams/1"),
        "by-hand": entry("by-hand", "publisher", "cli"),
        "action": entry("action", "client", "action add-client"),
    }
    assert [w.fingerprint for w in plan.to_trust(trusted)] == ["new", "moved"]
    assert [e["fingerprint"] for e in plan.to_untrust(trusted)] == ["gone"]
