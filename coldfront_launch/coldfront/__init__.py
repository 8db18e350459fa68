"""ColdFront inside the instance: its data folder and env file (``appdata``), the env
rendered from ``[coldfront]`` (``env``), the site's certificate (``tls``), the
least-privilege drop-in and exposure report (``hardening``) and Django management as the
service account (``manage``). Imports the layers below (``apptainer`` and down), never
its sibling ``changes`` or anything above."""
