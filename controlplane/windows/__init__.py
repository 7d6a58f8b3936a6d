"""Maintenance windows and freezes: rules, the deployment gate, calendars and conflicts."""
