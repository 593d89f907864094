"""``python -m ekyc.training``: the same as ``ekyc-train``."""

from ekyc.training.cli import main

raise SystemExit(main())
