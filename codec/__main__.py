"""`python -m codec ...` is `aec ...`."""

from __future__ import annotations

from codec.cli import main

raise SystemExit(main())
