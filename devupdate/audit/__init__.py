"""Admin audit trail (who changed what) and, later, the device request audit log files."""
