"""``python -m atlasguard`` runs the command line."""

from atlasguard._cli.main import main

main()
