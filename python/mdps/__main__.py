"""``python -m mdps ARGS...``: the ``mdps`` command line, run from the
package's engine (the same commands, options and exit codes)."""
import signal
import sys

from . import _core


def main() -> int:
    # Ctrl-C ends the run at once, as it does the native command.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return _core.cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
