"""`python -m emulators.qstash.launcher PATH`: write PATH, a `qstash` executable that runs this emulator
with this interpreter from anywhere (`make setup` writes `.venv/bin/qstash`).

With `.venv/bin` on PATH, `qstash dev -port 8080` starts the emulator exactly as the official dev
binary's command line would (dev.py), for scripts and SDK dev modes that look for `qstash` there.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def launcher_script(python: str, root: Path) -> str:
    return (
        "#!/bin/sh\n"
        "# stashkit: the QStash emulator standing in for the official `qstash` binary (emulators/qstash/dev.py)\n"
        f'PYTHONPATH={shlex.quote(str(root))}"${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec {shlex.quote(python)} -m emulators.qstash "$@"\n'
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m emulators.qstash.launcher PATH")
    target = Path(args[0])
    target.write_text(launcher_script(sys.executable, ROOT))
    target.chmod(0o755)


if __name__ == "__main__":
    main()
