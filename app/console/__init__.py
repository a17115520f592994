"""The auditor's console: server-rendered pages under ``/console`` (no JavaScript needed)."""
