"""Integrations with other libraries, each behind an extra; they use only the public API."""
