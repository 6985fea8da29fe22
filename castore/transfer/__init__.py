"""Offline transfer: OCI-layout bundles, directory remotes, push and pull.

- ``oci``: the OCI image-layout vocabulary (media types, annotations, the pydantic models of
  ``index.json`` and image manifests, reference names) and a sha256-checking reader;
- ``remote``: the one :class:`~castore.transfer.remote.Remote` protocol every backend fits
  (blobs by sha256, manifests, refs with compare-and-swap);
- ``backends``: ``open_remote``, the backend for a URL;
- ``directory``: the directory remote (an OCI layout on any path);
- ``outbound``: versions to manifests and blobs (export and push);
- ``bundle``: the tar of an OCI layout, written streaming and read as hostile input;
- ``landing``: incoming versions checked and committed all or nothing (import and pull);
- ``inbound``: pull from a remote.
"""
