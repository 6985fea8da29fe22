"""Keeping a store healthy: gc, prune, stats, fsck and catalogue rebuild."""
