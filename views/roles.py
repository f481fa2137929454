"""Role groups used by the views' permission tables (REGULATIONS §0)."""

BUSINESS = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance",
                      "management_dept"})
FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
SUPERVISORS = frozenset({"manager", "cs_supervisor"})
ADMIN = frozenset({"admin"})
NOBODY: frozenset[str] = frozenset()

# Menus per role (issue 14): the screens a role works with. A role missing here sees every screen
# its permissions open; a user with several roles sees the union. Menus only hide: the views'
# permission tables still decide every request, so a typed URL is judged as before.
SHARED_MENU = frozenset({"overdue", "unit"})
MENUS: dict[str, frozenset[str]] = {
    "security": SHARED_MENU | {"resident", "release_slip", "move_out", "visitor_log", "patrol_record", "duty_log",
                               "duty_shift", "duty_handover", "duty_followup", "help_request",
                               "renovation_hot_work"},
    "engineering": SHARED_MENU | {"repair_order", "help_request", "renovation", "renovation_hot_work",
                                  "renovation_power", "renovation_print", "duty_shift"},
    "finance": SHARED_MENU | {"resident", "occupancy", "renovation", "renovation_deposits", "violation",
                              "violation_deductions", "archive_arrears", "move_out"},
    "management_dept": SHARED_MENU | {"renovation", "renovation_hot_work", "renovation_print", "violation",
                                      "complaint", "duty_shift"},
}


def in_menu(roles: set[str] | frozenset[str], endpoint: str) -> bool:
    """Whether a user holding ``roles`` gets ``endpoint`` in the menu (an unlisted role: every screen)."""
    if any(role not in MENUS for role in roles):
        return True
    return any(endpoint in MENUS[role] for role in roles)
