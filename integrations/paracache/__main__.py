"""``python -m paracache COMMAND``: the same as the ``paracache`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
