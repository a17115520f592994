"""Policies: versioned, four-eyes approved responsible-investment policy documents."""
