"""The bridge's CNI lease: noted at post_start, removed once the instance is gone."""

from __future__ import annotations

from pathlib import Path

from coldfront_launch.hooks.bridge import leases


def lease_file(folder: Path, ip: str, owner: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lease = folder / ip
    lease.write_text(f"{owner}\r\neth0")
    return lease


def test_the_noted_lease_is_removed_and_no_other(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    network = tmp_path / "cni" / "cf-launch"
    ours = lease_file(network, "10.22.0.5", "a1b2c3")
    other = lease_file(network, "10.22.0.6", "d4e5f6")
    leases.note(state, ours)
    assert (state / leases.NOTE).stat().st_mode & 0o777 == 0o600
    assert leases.release(state) == str(ours)
    assert not ours.exists() and other.exists()
    assert not (state / leases.NOTE).exists()
    assert leases.release(state) == "", "nothing noted: nothing done"


def test_a_lease_that_names_another_container_now_is_left(tmp_path: Path) -> None:
    """CNI released ours and gave the address to another instance: not ours to remove."""
    state = tmp_path / "state"
    state.mkdir()
    lease = lease_file(tmp_path / "cni" / "net", "10.22.0.5", "ours")
    leases.note(state, lease)
    lease.write_text("someone-else\r\neth0")
    assert leases.release(state) == ""
    assert lease.exists() and not (state / leases.NOTE).exists()


def test_no_lease_no_note(tmp_path: Path) -> None:
    leases.note(tmp_path, tmp_path / "missing")
    assert not (tmp_path / leases.NOTE).exists()
    (tmp_path / leases.NOTE).write_text("{not json")
    assert leases.release(tmp_path) == "" and not (tmp_path / leases.NOTE).exists()
