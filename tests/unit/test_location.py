"""Location service on the shared table, and its write-behind store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from simplefast.proxy.location import Binding, LocationFullError, ShmLocation
from simplefast.store import location as store


def shm_location(impl: SimpleNamespace, slots: int = 64) -> ShmLocation:
    m = impl.shmindex
    buf = bytearray(m.table_size(slots, 128, 768))
    return ShmLocation(m.ShmTable(buf, slots, 128, 768, create=True))


def b(contact: str, expires_at: float = 100.0, **kw: object) -> Binding:
    return Binding(contact, expires_at, kw.get("q"), "cid", 1, ("<sip:p.example.com;lr>",), "udp", None)  # type: ignore[arg-type]


def test_put_get_expire_and_dirty(impl: SimpleNamespace) -> None:
    loc = shm_location(impl)
    loc.put("sip:alice@example.com", [b("sip:a@192.0.2.1", 50.0), b("sip:a@192.0.2.2", 150.0)])
    assert [x.contact for x in loc.get("sip:alice@example.com", 10.0)] == [
        "sip:a@192.0.2.1",
        "sip:a@192.0.2.2",
    ]
    assert loc.get("sip:alice@example.com", 10.0)[0].path == ("<sip:p.example.com;lr>",)
    assert [x.contact for x in loc.get("sip:alice@example.com", 60.0)] == ["sip:a@192.0.2.2"]  # one expired
    assert loc.count() == 1 and set(loc.take_dirty()) == {"sip:alice@example.com"} and loc.take_dirty() == {}
    loc.put("sip:alice@example.com", [])
    assert loc.get("sip:alice@example.com", 0.0) == [] and loc.count() == 0


def test_two_views_of_one_table_see_each_other(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    buf = bytearray(m.table_size(64, 128, 768))
    one = ShmLocation(m.ShmTable(buf, 64, 128, 768, create=True))
    two = ShmLocation(m.ShmTable(buf, 64, 128, 768, create=False))
    one.put("sip:bob@example.com", [b("sip:bob@192.0.2.9")])
    assert [x.contact for x in two.get("sip:bob@example.com", 0.0)] == ["sip:bob@192.0.2.9"]


def test_limits_raise_location_full(impl: SimpleNamespace) -> None:
    loc = shm_location(impl, slots=8)
    with pytest.raises(LocationFullError, match="longer than 128 bytes"):
        loc.put("sip:" + "x" * 200 + "@example.com", [b("sip:x@192.0.2.1")])
    with pytest.raises(LocationFullError, match="more than 768"):
        loc.put("sip:y@example.com", [b(f"sip:y{i}@192.0.2.1") for i in range(20)])
    with pytest.raises(LocationFullError, match="full"):
        for i in range(8):
            loc.put(f"sip:u{i}@example.com", [b("sip:u@192.0.2.1")])


def test_store_round_trip_keeps_remaining_lifetime(tmp_path: Path) -> None:
    rows = [("sip:a@example.com", [b("sip:a@192.0.2.1", expires_at=1000.0 + 600)]),
            ("sip:gone@example.com", [b("sip:g@192.0.2.1", expires_at=1000.0 + 5)])]  # fmt: skip
    assert store.save(tmp_path, rows, mono_now=1000.0, wall_now=1_800_000_000.0) == 2
    # restarted later: 60 s of wall time passed, the monotonic clock starts elsewhere
    back = dict(store.load(tmp_path, mono_now=50.0, wall_now=1_800_000_060.0))
    assert list(back) == ["sip:a@example.com"]  # the 5-second binding expired meanwhile
    assert back["sip:a@example.com"][0].expires_at == pytest.approx(50.0 + 540.0)
    store.save(tmp_path, [("sip:a@example.com", [])], 0.0, 1_800_000_060.0)
    assert list(store.load(tmp_path, 0.0, 1_800_000_060.0)) == []


def test_prefault_keeps_what_the_table_holds() -> None:
    """prefault (simplefast/server/shared.py) makes the pages resident without changing a byte,
    by madvise or, where the kernel lacks MADV_POPULATE_WRITE, by a write per page."""
    import mmap

    from simplefast._impl import shmindex
    from simplefast.server.shared import AOR_MAX, BINDINGS_MAX, prefault

    class OldKernel(mmap.mmap):
        def madvise(self, *args: int) -> None:
            raise OSError(22, "Invalid argument")

    slots = 64
    size = shmindex.table_size(slots, AOR_MAX, BINDINGS_MAX)
    for m in (shmindex.create_shared(size), OldKernel(-1, size, flags=mmap.MAP_SHARED)):
        table = shmindex.ShmTable(m, slots, AOR_MAX, BINDINGS_MAX, create=True, zeroed=True)
        table.put(b"sip:a@example.com", b"x" * 500)
        before = bytes(m)
        assert prefault(m) is True
        assert bytes(m) == before and table.get(b"sip:a@example.com") == b"x" * 500


def test_prefault_gives_up_when_the_kernel_cannot_populate() -> None:
    """ENOMEM (or anything but EINVAL, an old kernel) stops it: no write per page follows,
    which on a machine out of memory would end in the OOM killer."""
    import errno
    import mmap

    from simplefast.server.shared import prefault

    class NoMemory(mmap.mmap):
        def madvise(self, *args: int) -> None:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")

        def __setitem__(self, *args: object) -> None:
            raise AssertionError("no page may be touched after ENOMEM")

    assert prefault(NoMemory(-1, 1 << 20, flags=mmap.MAP_SHARED)) is False


def test_tables_larger_than_the_memory_available_are_not_prefaulted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configuration whose tables exceed the machine still starts (pages come as rows are
    written, as with --no-prefault), with a warning that says why."""
    from simplefast.server import shared
    from simplefast.server.config import load

    warnings: list[str] = []

    class Log:  # the module's logger, keeping what it warns (picologging loggers are read-only)
        def info(self, fmt: str, *a: object) -> None:
            pass

        def warning(self, fmt: str, *a: object) -> None:
            warnings.append(fmt % a)

    monkeypatch.setattr(shared, "log", Log())
    monkeypatch.setattr(shared, "mem_available", lambda: 64 << 20)
    state = shared.create(load(None, {"data_dir": tmp_path, "auth": False}))
    assert state.prefaulted is False
    assert any("not prefaulted" in w and "64 MiB" in w for w in warnings), warnings
    monkeypatch.setattr(shared, "mem_available", lambda: None)  # unknown: try
    assert shared.create(load(None, {"data_dir": tmp_path / "b", "auth": False})).prefaulted is True
