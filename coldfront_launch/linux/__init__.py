"""The host's own primitives, thin and without policy: the distribution and its install
hints (``distro``), netlink and ethtool (``netinfo``), ``/proc/sys`` (``sysctl``), iptables
and nft (``netfilter``), firewalld and its D-Bus signals (``firewalld``,
``firewalld_bus``) and port listeners (``listeners``). Imports only the foundation
and the layers below (``types``, ``config``, ``state``)."""
