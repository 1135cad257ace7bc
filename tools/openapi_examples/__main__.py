"""``python -m tools.openapi_examples [target]``: write the examples file."""

from tools.openapi_examples import main

raise SystemExit(main())
