"""``python -m controlplane``: the same CLI as the ``controlplane`` script."""

from controlplane.cli import main

main()
