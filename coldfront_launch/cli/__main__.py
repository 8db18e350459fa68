"""``python -m coldfront_launch.cli``: the same as the ``cf-launch`` console script."""

from coldfront_launch.cli import main

main()
