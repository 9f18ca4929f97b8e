"""``python -m asyncio_compat``: the diagnostic report (see :mod:`asyncio_compat.diagnose`)."""

from .diagnose import main

if __name__ == "__main__":
    raise SystemExit(main())
