"""The firewall ruleset of one bridge-mode instance: its own chains, one jump each."""

from __future__ import annotations

from coldfront_launch.hooks import metadata
from coldfront_launch.hooks.bridge.settings import BridgeSettings
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset, chain_tag

PREFIX = "CF-LAUNCH"


def chain_names(instance: str) -> dict[str, str]:
    tag = chain_tag(instance)
    return {part: f"{PREFIX}-{tag}-{part}" for part in ("DNAT", "OUT", "MASQ", "FWD", "MSS")}


def comment(instance: str) -> str:
    return f"-m comment --comment cf-launch:{instance}"


def ruleset(instance: str, settings: BridgeSettings, ip: str, external: str,
            family: str = "ipv4") -> Ruleset:
    """DNAT in (external interface and the host itself), MASQUERADE out, FORWARD accepts
    for this instance only (after dropping its packets to the cloud's metadata service,
    unless ``allow_metadata``), and MSS clamping: every rule in chains this instance owns.
    ``family`` ``ipv6``: the same for the instance's IPv6 address (ip6tables)."""
    names = chain_names(instance)
    note = comment(instance)
    v6 = family == "ipv6"
    me = f"{ip}/128" if v6 else f"{ip}/32"
    to = f"[{ip}]" if v6 else ip
    loopback = "::1/128" if v6 else "127.0.0.0/8"
    br = settings.bridge
    dnat = tuple(f"-i {external} -p tcp -m tcp --dport {p.host} {note} "
                 f"-j DNAT --to-destination {to}:{p.container}" for p in settings.ports)
    local = tuple(f"! -d {loopback} -p tcp -m tcp --dport {p.host} {note} "
                  f"-j DNAT --to-destination {to}:{p.container}" for p in settings.ports)
    drops = () if settings.allow_metadata else metadata.forward_drops(me, br, note, family)
    forward = (
        *drops,
        f"-i {br} -s {me} {note} -j ACCEPT",
        f"-o {br} -d {me} -m conntrack --ctstate RELATED,ESTABLISHED {note} -j ACCEPT",
        *(f"-o {br} -d {me} -p tcp -m tcp --dport {p.container} -m conntrack --ctstate DNAT "
          f"{note} -j ACCEPT" for p in settings.ports),
    )
    clamp = "-p tcp -m tcp --tcp-flags SYN,RST SYN"
    mss = (f"-s {me} {clamp} {note} -j TCPMSS --clamp-mss-to-pmtu",
           f"-d {me} {clamp} {note} -j TCPMSS --clamp-mss-to-pmtu")
    chains = (
        Chain("nat", names["DNAT"], dnat),
        Chain("nat", names["OUT"], local),
        Chain("nat", names["MASQ"], (f"-s {me} -o {external} {note} -j MASQUERADE",)),
        Chain("filter", names["FWD"], forward),
        Chain("mangle", names["MSS"], mss),
    )
    local_only = "-m addrtype --dst-type LOCAL"
    jumps = (
        Jump("nat", "PREROUTING", f"{local_only} {note} -j {names['DNAT']}"),
        Jump("nat", "OUTPUT", f"{local_only} {note} -j {names['OUT']}"),
        Jump("nat", "POSTROUTING", f"{note} -j {names['MASQ']}"),
        Jump("filter", "FORWARD", f"{note} -j {names['FWD']}"),
        Jump("mangle", "FORWARD", f"{note} -j {names['MSS']}"),
    )
    return Ruleset(chains, jumps, family)


def forwarded_ports(saved: str) -> dict[int, str]:
    """Host ports that cf-launch instances forward now, from ``iptables-save`` output:
    port -> the instance's chain tag and name."""
    found: dict[int, str] = {}
    for line in saved.splitlines():
        if not line.startswith(f"-A {PREFIX}-") or "-j DNAT" not in line or "-i " not in line:
            continue
        words = line.split()
        try:
            port = int(words[words.index("--dport") + 1])
            owner = words[words.index("--comment") + 1].strip('"')
        except (ValueError, IndexError):
            continue
        found[port] = owner.removeprefix("cf-launch:")
    return found
