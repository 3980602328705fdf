"""``python -m hongbao.cli``: the same as the ``hongbao`` command."""

from hongbao.cli.main import main

main()
