"""The thin layer shared by every regulation: notifications now; transitions, deadlines,
retention and the audit trail as the later issues land."""
