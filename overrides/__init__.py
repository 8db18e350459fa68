"""Container-side override files (systemd, NetworkManager, udev) bound in by the override hook."""
