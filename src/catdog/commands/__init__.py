"""Sub-commands of ``catdog``: one module each, discovered by :mod:`catdog.cli`."""
