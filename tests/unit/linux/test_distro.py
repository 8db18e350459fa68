"""os-release parsing, per-distribution install commands, setuid notes, and doctor's output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from coldfront_launch.apptainer import conf as apptainer_conf
from coldfront_launch.cli import cli
from coldfront_launch.linux import distro

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "os-release"
RELEASE = distro.APPTAINER_VERSION
GITHUB = f"https://github.com/apptainer/apptainer/releases/download/v{RELEASE}"

# sample -> (family, the command doctor must print for Apptainer, the one for iptables)
EXPECTED = {
    "al2023": ("al2023",
               "build Apptainer 1.4.5 from source (Go >= 1.23.6), or build those two and then "
               f"`dnf install -y {GITHUB}/apptainer-{RELEASE}-1.x86_64.rpm`",
               "dnf install -y iptables-nft"),
    "rhel-9": ("rhel",
               "dnf install -y https://dl.fedoraproject.org/pub/epel/"
               "epel-release-latest-9.noarch.rpm && dnf install -y apptainer",
               "dnf install -y iptables-nft"),
    "rocky-8": ("rhel", "dnf install -y epel-release && dnf install -y apptainer",
                "dnf install -y iptables"),
    "debian-11": ("debian", f"wget {GITHUB}/apptainer_{RELEASE}_amd64.deb && "
                  f"apt-get install -y ./apptainer_{RELEASE}_amd64.deb",
                  "apt-get install -y iptables"),
    "debian-12": ("debian", f"wget {GITHUB}/apptainer_{RELEASE}_amd64.deb && "
                  f"apt-get install -y ./apptainer_{RELEASE}_amd64.deb",
                  "apt-get install -y iptables"),
    "debian-13": ("debian", "apt-get update && apt-get install -y apptainer/unstable",
                  "apt-get install -y iptables"),
    "ubuntu-22.04": ("ubuntu", "add-apt-repository -y ppa:apptainer/ppa && apt-get update && "
                     "apt-get install -y apptainer", "apt-get install -y iptables"),
    "ubuntu-24.04": ("ubuntu", "add-apt-repository -y ppa:apptainer/ppa && apt-get update && "
                     "apt-get install -y apptainer", "apt-get install -y iptables"),
    "unknown": ("unknown", "https://apptainer.org/docs/admin/main/installation.html",
                "install iptables with your package manager"),
}


def test_every_sample_has_an_expectation() -> None:
    assert sorted(p.name for p in SAMPLES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_family_and_hints(sample: str) -> None:
    family, apptainer_cmd, iptables_cmd = EXPECTED[sample]
    d = distro.read_distro(SAMPLES / sample)
    assert d.family == family
    assert apptainer_cmd in distro.install_hint("apptainer", d)
    assert distro.install_hint("iptables", d) == iptables_cmd


def test_al2023_hint_says_why_not_epel() -> None:
    hint = distro.install_hint("apptainer", distro.read_distro(SAMPLES / "al2023"))
    assert "no EPEL" in hint and "fuse-overlayfs and squashfuse" in hint
    assert "epel-release" not in hint
    assert "suid" not in hint, "--boot as root needs no setuid package"


def test_parse_quoting() -> None:
    text = ('# comment\n\nID=debian\nPRETTY_NAME="A \\"quoted\\" \\\\ name"\n'
            "NAME='single \"inner\"'\nnot a line\nVERSION_ID=\"12\"\n")
    assert distro.parse_os_release(text) == {
        "ID": "debian", "PRETTY_NAME": 'A "quoted" \\ name', "NAME": 'single "inner"',
        "VERSION_ID": "12"}
    assert distro.read_distro(SAMPLES / "unknown").pretty_name == 'Example OS 7 "Quoted"'


def test_read_distro_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert distro.read_distro(tmp_path / "missing") == distro.Distro()
    assert distro.Distro().family == "unknown"
    monkeypatch.setattr(distro, "OS_RELEASE_PATHS", (tmp_path / "missing",
                                                     SAMPLES / "rocky-8"))
    current = distro.read_distro()
    assert (current.id, current.major, current.id_like) == ("rocky", "8",
                                                            ("rhel", "centos", "fedora"))


def test_id_like_decides_for_derivatives() -> None:
    assert distro.Distro(id="linuxmint", id_like=("ubuntu", "debian")).family == "ubuntu"
    assert distro.Distro(id="almalinux", id_like=("rhel", "centos", "fedora")).family == "rhel"
    assert distro.Distro(id="amzn", version_id="2").family == "unknown"
    with pytest.raises(ValueError):
        distro.install_hint("docker", distro.Distro())


def _bin(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        tool = folder / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    return folder


def test_install_problems(tmp_path: Path) -> None:
    empty = _bin(tmp_path)
    missing = distro.install_problems(SAMPLES / "ubuntu-24.04", path=str(empty))
    assert [(p.check, p.fatal) for p in missing] == [("apptainer", True)]
    assert "Ubuntu 24.04.1 LTS" in missing[0].message
    assert "ppa:apptainer/ppa" in missing[0].hint

    _bin(tmp_path, "apptainer")
    link = distro.install_problems(SAMPLES / "ubuntu-24.04", path=str(empty))
    assert [p.check for p in link] == ["singularity link"]
    assert link[0].hint == f"ln -s {empty / 'apptainer'} {empty / 'singularity'}"

    _bin(tmp_path, "singularity")
    assert distro.install_problems(SAMPLES / "ubuntu-24.04", path=str(empty)) == []


def _starter(tmp_path: Path, mode: int) -> str:
    starter = tmp_path / "libexec" / "apptainer" / "bin" / "starter-suid"
    starter.parent.mkdir(parents=True, exist_ok=True)
    starter.write_text("")
    starter.chmod(mode)
    return str(starter)


@pytest.mark.parametrize(("conf_text", "says"), [
    ("allow setuid = yes\n", "`allow setuid = yes`"),
    ("# allow setuid = no\n", "`allow setuid = yes`"),   # unset: Apptainer's default
    ("  allow setuid = no\n", "though"),
])
def test_setuid_notes(tmp_path: Path, conf_text: str, says: str) -> None:
    conf = tmp_path / "apptainer.conf"
    conf.write_text(conf_text)
    starter = _starter(tmp_path, 0o4755)
    notes = apptainer_conf.setuid_problems(confs=(conf,), globs=(starter,))
    assert len(notes) == 1
    assert notes[0].check == "setuid" and not notes[0].fatal
    assert says in notes[0].message and starter in notes[0].message


def test_no_setuid_note_without_the_suid_bit(tmp_path: Path) -> None:
    conf = tmp_path / "apptainer.conf"
    conf.write_text("allow setuid = yes\n")
    starter = _starter(tmp_path, 0o755)
    assert apptainer_conf.setuid_problems(confs=(conf,), globs=(starter,)) == []
    nowhere = (str(tmp_path / "none" / "x"),)
    assert apptainer_conf.setuid_problems(confs=(conf,), globs=nowhere) == []


def _doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: str,
            starters: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    """``cf-launch doctor`` in this process, on a PATH without Apptainer or any tool."""
    monkeypatch.setattr(distro, "OS_RELEASE_PATHS", (SAMPLES / sample,))
    monkeypatch.setattr(apptainer_conf, "STARTER_SUID_GLOBS", starters)
    monkeypatch.setattr(apptainer_conf, "APPTAINER_CONFS", (tmp_path / "apptainer.conf",))
    monkeypatch.setenv("PATH", str(_bin(tmp_path)))
    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--state-root", str(tmp_path / "state"), "doctor"])
    return result.exit_code, result.output.splitlines()


def _fix(lines: list[str], check: str) -> str:
    at = next(i for i, line in enumerate(lines) if line.startswith(f"✗ {check}: "))
    assert lines[at + 1].startswith("    fix: ")
    return lines[at + 1][len("    fix: "):]


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_doctor_prints_the_command_for_this_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: str) -> None:
    _family, apptainer_cmd, iptables_cmd = EXPECTED[sample]
    code, lines = _doctor(tmp_path, monkeypatch, sample)
    assert code == 3, lines
    assert apptainer_cmd in _fix(lines, "apptainer")
    assert _fix(lines, "iptables") == iptables_cmd
    assert not any(line.startswith("! setuid") for line in lines)


def test_doctor_notes_setuid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "apptainer.conf").write_text("allow setuid = yes\n")
    starter = _starter(tmp_path, 0o4755)
    _code, lines = _doctor(tmp_path, monkeypatch, "al2023", starters=(starter,))
    note = [line for line in lines if line.startswith("! setuid: ")]
    assert len(note) == 1 and "does not need it" in note[0]


def test_doctor_runs_without_os_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distro, "OS_RELEASE_PATHS", (tmp_path / "missing",))
    problems = distro.install_problems(path=str(_bin(tmp_path)))
    assert "this distribution" in problems[0].message
    assert os.path.basename(distro.INSTALL_DOC) in problems[0].hint


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_hint_urls_and_packages_are_in_install_doc(sample: str) -> None:
    """What doctor prints stays what docs/install.md explains."""
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "install.md").read_text()
    d = distro.read_distro(SAMPLES / sample)
    for url in re.findall(r"https://[^\s`]+", distro.install_hint("apptainer", d)):
        assert url in doc, url
    for piece in ("iptables", "nft", "ethtool"):
        command = distro.install_hint(piece, d)
        if command.startswith(("dnf ", "apt-get ")):
            assert command.split()[-1] in doc, command


def test_runtime_errors_carry_this_distributions_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """start/stop failing on a missing tool say the same command as doctor."""
    from coldfront_launch import apptainer
    from coldfront_launch.errors import ApptainerNotFound, HostChangeError
    from coldfront_launch.linux import netfilter, netinfo

    monkeypatch.setattr(distro, "OS_RELEASE_PATHS", (SAMPLES / "rocky-8",))
    monkeypatch.setenv("PATH", str(_bin(tmp_path)))
    with pytest.raises(HostChangeError) as missing_iptables:
        netfilter.save()
    assert missing_iptables.value.hint == "dnf install -y iptables"
    with pytest.raises(HostChangeError) as missing_ethtool:
        netinfo._ethtool(["-k", "lo"])
    assert missing_ethtool.value.hint == "dnf install -y ethtool"
    with pytest.raises(ApptainerNotFound) as missing_apptainer:
        apptainer.locate()
    assert missing_apptainer.value.hint == ("dnf install -y epel-release && "
                                            "dnf install -y apptainer")
