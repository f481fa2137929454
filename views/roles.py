"""Role groups used by the views' permission tables (REGULATIONS §0)."""

BUSINESS = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance",
                      "management_dept"})
FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
SUPERVISORS = frozenset({"manager", "cs_supervisor"})
ADMIN = frozenset({"admin"})
NOBODY: frozenset[str] = frozenset()
