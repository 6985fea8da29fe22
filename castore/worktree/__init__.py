"""Checkout, download and verify of versions against directories on disk."""
