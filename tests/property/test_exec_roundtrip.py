"""Hypothesis round trip of the executable bit: add_dir, then checkout gives the same modes."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import castore

_names = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
_perms = st.sampled_from([0o644, 0o600, 0o444, 0o755, 0o700, 0o744, 0o654, 0o645])
_tree = st.dictionaries(
    st.tuples(st.sampled_from(["", "sub/", "sub/deep/"]), _names).map("".join),
    st.tuples(st.binary(max_size=64), _perms),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25)
@given(tree=_tree, link=st.sampled_from(["copy", "auto", "hardlink", "symlink"]))
def test_add_dir_then_checkout_keeps_the_executable_bit(
    tree: dict[str, tuple[bytes, int]], link: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        for rel, (data, perm) in tree.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
            (src / rel).chmod(perm)
        with castore.init(base / "store", durable=False) as store:
            v = store.draft("t").add_dir(src).finalize()
            assert {e.path: e.executable for e in v.files()} == {
                rel: bool(perm & 0o111) for rel, (_, perm) in tree.items()
            }
            out = v.checkout(base / "out", link=link)
            for rel, (data, perm) in tree.items():
                got = os.stat(out / rel).st_mode  # through a link in link modes
                assert bool(got & 0o111) == bool(perm & 0o111), (rel, oct(got))
                assert stat.S_IMODE(got) & 0o444  # readable
                assert (out / rel).read_bytes() == data
            assert v.verify(out).ok
            # and again from the catalogue alone: a second checkout changes nothing
            before = {rel: os.lstat(out / rel).st_ino for rel in tree}
            v.checkout(out, link=link)
            assert {rel: os.lstat(out / rel).st_ino for rel in tree} == before
