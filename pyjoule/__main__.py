"""``python -m pyjoule`` is the ``pyjoule`` command."""

from .cli import main

raise SystemExit(main())
