"""Handles: :class:`Draft`, :class:`ArtifactVersion` and :class:`Collection` hold the store's
parts and call the operations below them."""
