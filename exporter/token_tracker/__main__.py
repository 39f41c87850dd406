"""``python -m token_tracker``: the same as the ``token-tracker`` command."""

from .cli import main

raise SystemExit(main())
