"""Launch Perceiver GUI: the same entry as the `perceiver-gui` command."""
from perceiver_gui.cli import main

if __name__ == "__main__":  # a sweep's spawned workers import this file again: they must not run the CLI
    raise SystemExit(main())
