"""`python -m perceiver_gui`: the same entry as the `perceiver-gui` command."""
from perceiver_gui.cli import main

raise SystemExit(main())
