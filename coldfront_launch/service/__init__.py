"""cf-launch as a host service: ``cf-launch run`` under systemd (``supervisor``:
``READY=1``, a watch on the instance, a clean stop), automatic repair on firewalld's
reloads and a periodic drift check (``autorepair``), and the unit texts ``service
install`` writes (``units``)."""
