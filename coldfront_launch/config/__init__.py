"""What the administrator writes, validated before anything runs: the settings and their
TOML files (``settings``), the checks every value goes through (``validate``), and the
``[security]`` and ``[coldfront]`` tables (``security``, ``coldfront``). Imports only the
foundation and the state folder (the image pin ``upgrade`` left)."""
