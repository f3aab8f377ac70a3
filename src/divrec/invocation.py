"""How this process was started, so that a launcher can start the same divrec command again (DDP children).

Recorded by the CLI (``divrec.cli.main``), read by ``divrec.lit.strategies``; neither imports the other, so lower
layers never import the CLI.
"""

from __future__ import annotations

import sys

# Hydra's flags that choose config folders/files; DDP children get them again (see ``relaunch_command``).
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
_invocation: list[str] = []  # the divrec command and its config flags, recorded by ``record``


def record(command: str, argv: list[str]) -> None:
    """Remember the divrec ``command`` and the config flags among its arguments ``argv``."""
    _invocation[:] = [command, *config_flags(argv)]


def relaunch_command() -> list[str] | None:
    """How to start this divrec command again in a new process (same config folders; the caller adds overrides);
    None when this process was not started by ``divrec.cli.main`` (e.g. ``divrec.pipeline`` called from another
    Hydra app)."""
    return [sys.executable, "-m", "divrec", *_invocation] if _invocation else None


def config_flags(argv: list[str]) -> list[str]:
    flags: list[str] = []
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            flags += [arg, argv[i + 1]]
        elif arg.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            flags.append(arg)
    return flags
