"""A read-only fsspec filesystem over a store: ``castore://REF/PATH``.

Installed with ``pip install 'castore[fsspec]'``, registered under the ``castore`` protocol
through the ``fsspec.specs`` entry point (and in-process when this module is imported), so::

    pandas.read_csv("castore://mnist:prod/data/train.csv")                  # default store
    pandas.read_parquet("castore://features:v3/t.parquet", storage_options={"store": "/s"})
    fsspec.filesystem("castore", store="/s").ls("mnist:prod/data")
    upath.UPath("castore://mnist:prod/data", store="/s").iterdir()

The first path segment is a reference string (``mnist``, ``mnist:prod``, ``mnist:v3``,
``mnist@9f2c1a``, a version id); the rest is a path inside that version. The root lists the
collections (each as a directory standing for its ``latest`` version). Files open seekable and
every byte read is checked (docs/concepts.md, "Seeking and verification"). Like every
integration, this module uses only the public API (``castore``, ``castore.errors``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any, BinaryIO

import castore
from castore.errors import CastoreError, NotFoundError, ReadOnlyStoreError

try:
    from fsspec import AbstractFileSystem, register_implementation
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "castore's fsspec filesystem needs fsspec: pip install 'castore[fsspec]'"
    ) from exc

__all__ = ["PROTOCOL", "CastoreFileSystem", "register"]

PROTOCOL = "castore"
#: Directory listings of this many versions are kept per filesystem (built once per version).
_LISTING_CACHE = 64

_Info = dict[str, Any]


class CastoreFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only access to a store's versions as files.

    Args:
        store: a :class:`castore.Store`, or the path of one (``create=False``: a missing store
            raises :class:`castore.errors.StoreNotFoundError`); None opens the default store
            (``$CASTORE_HOME``, else ``~/.castore``).
    """

    protocol = PROTOCOL
    root_marker = ""
    cachable = True

    def __init__(self, store: castore.Store | str | os.PathLike[str] | None = None, **kwargs: Any):
        super().__init__(store=store, **kwargs)
        if isinstance(store, castore.Store):
            self.store = store
        elif store is None:
            self.store = castore.open()
        else:
            self.store = castore.open(os.fspath(store), create=False)
        self._lock = threading.Lock()
        # version id -> {directory: {child path: info}} (a version's files never change)
        self._listings: dict[str, dict[str, dict[str, _Info]]] = {}

    # -- paths ---------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path)
        if path.startswith(PROTOCOL + "://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.strip("/")

    def _split(self, path: str) -> tuple[str, str]:
        """``"ds:prod/a/b.csv"`` -> ``("ds:prod", "a/b.csv")``."""
        ref, _, inner = self._strip_protocol(path).partition("/")
        return ref, inner

    def _version(self, ref: str) -> castore.ArtifactVersion:
        try:
            return self.store.get(ref)
        except NotFoundError as exc:
            raise FileNotFoundError(f"castore://{ref}: {exc}") from exc
        except CastoreError as exc:  # malformed references and the like name the problem
            raise FileNotFoundError(f"castore://{ref}: {exc}") from exc

    def _listing(self, version: castore.ArtifactVersion) -> dict[str, dict[str, _Info]]:
        with self._lock:
            cached = self._listings.get(version.id)
        if cached is not None:
            return cached
        dirs: dict[str, dict[str, _Info]] = {"": {}}
        for entry in version.files():
            parent, _, _ = entry.path.rpartition("/")
            dirs.setdefault(parent, {})[entry.path] = {
                "name": entry.path,
                "size": entry.size,
                "type": "file",
                "digest": entry.digest,
                "ref": entry.ref,
                "executable": entry.executable,
            }
            # make every ancestor directory known to its parent
            child = parent
            while child:
                up, _, _ = child.rpartition("/")
                siblings = dirs.setdefault(up, {})
                if child in siblings:
                    break
                siblings[child] = {"name": child, "size": 0, "type": "directory"}
                dirs.setdefault(child, {})
                child = up
        with self._lock:
            if len(self._listings) >= _LISTING_CACHE:
                self._listings.pop(next(iter(self._listings)))
            self._listings[version.id] = dirs
        return dirs

    @staticmethod
    def _named(ref: str, info: _Info) -> _Info:
        return {**info, "name": f"{ref}/{info['name']}" if info["name"] else ref}

    # -- fsspec's interface ----------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        ref, inner = self._split(path)
        if not ref:
            infos = [
                {"name": c.name, "size": 0, "type": "directory"} for c in self.store.collections()
            ]
        else:
            version = self._version(ref)
            dirs = self._listing(version)
            if inner in dirs:
                infos = [self._named(ref, i) for i in sorted(dirs[inner].values(), key=_name)]
            else:
                infos = [self._named(ref, self._file_info(version, ref, inner))]
        return infos if detail else [i["name"] for i in infos]

    def _file_info(self, version: castore.ArtifactVersion, ref: str, inner: str) -> _Info:
        parent = inner.rpartition("/")[0]
        info = self._listing(version).get(parent, {}).get(inner)
        if info is None or info["type"] != "file":
            raise FileNotFoundError(f"castore://{ref}/{inner}: no such file in {version.ref}")
        return info

    def info(self, path: str, **kwargs: Any) -> _Info:
        ref, inner = self._split(path)
        if not ref:
            return {"name": "", "size": 0, "type": "directory"}
        version = self._version(ref)
        if not inner:
            return {
                "name": ref,
                "size": version.size,
                "type": "directory",
                "version": version.ref,
                "digest": version.digest,
            }
        dirs = self._listing(version)
        if inner in dirs:
            return {"name": f"{ref}/{inner}", "size": 0, "type": "directory"}
        return self._named(ref, self._file_info(version, ref, inner))

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        ref, inner = self._split(path)
        if not ref or maxdepth is not None or withdirs:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        version = self._version(ref)
        dirs = self._listing(version)
        found: dict[str, _Info] = {}
        if inner and inner not in dirs:
            info = self._file_info(version, ref, inner)  # a file finds itself
            found[f"{ref}/{inner}"] = self._named(ref, info)
        else:
            for entry in version.files(prefix=f"{inner}/" if inner else None):
                info = dirs[entry.path.rpartition("/")[0]][entry.path]
                found[f"{ref}/{entry.path}"] = self._named(ref, info)
        return found if detail else sorted(found)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> BinaryIO:
        if mode != "rb":
            raise ReadOnlyStoreError(f"castore:// is read-only: cannot open {path!r} with {mode!r}")
        ref, inner = self._split(path)
        version = self._version(ref)
        self._file_info(version, ref, inner)
        reader: BinaryIO = version.open(inner)
        return reader

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        with self._open(path) as f:
            size = f.seek(0, os.SEEK_END)
            first = 0 if start is None else (start if start >= 0 else max(0, size + start))
            last = size if end is None else (end if end >= 0 else max(0, size + end))
            if first == 0 and last >= size:
                f.seek(0)
                return f.read()  # one streaming, verified pass
            f.seek(first)
            return f.read(max(0, last - first))

    def ukey(self, path: str) -> str:
        info = self.info(path)
        return str(info.get("digest") or info["name"])

    def created(self, path: str) -> Any:
        return self._version(self._split(path)[0]).created_at

    def modified(self, path: str) -> Any:
        return self._version(self._split(path)[0]).updated_at

    # -- read-only -------------------------------------------------------------------------

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyStoreError("castore:// is read-only: add files through a draft")

    mkdir = makedirs = rm = rm_file = rmdir = _rm = touch = mv = cp_file = put_file = _refuse
    pipe_file = _refuse


def _name(info: _Info) -> str:
    return str(info["name"])


def register() -> None:
    """Register the ``castore`` protocol with fsspec in this process (the entry point does it
    for installed castore; this also covers a source tree that is not installed)."""
    register_implementation(PROTOCOL, CastoreFileSystem, clobber=True)
    if importlib.util.find_spec("upath") is not None:
        from upath.registry import register_implementation as register_path

        register_path(PROTOCOL, "castore.integrations.upath.CastorePath", clobber=True)


register()
