"""`python -m pacore.cli`: how `pacore run` starts its scheduler and workers."""

from pacore.cli import main

main()
