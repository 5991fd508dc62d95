"""``python -m pyjoule.cli`` is the ``pyjoule`` command, as ``python -m pyjoule`` is."""

from . import main

raise SystemExit(main())
