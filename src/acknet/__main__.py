"""``python -m acknet``: the same as the ``acknet`` command."""

from acknet.cli.main import main

main()
