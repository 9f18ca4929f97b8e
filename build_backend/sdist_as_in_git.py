"""The build backend: setuptools, with an sdist that holds only what git holds.

setuptools writes two files of its own into every sdist: a ``setup.cfg``
(empty ``egg_info`` tags) and the ``*.egg-info`` folder, which lands in
``shims/`` (the folder that ``package-dir`` maps to the top level) and there
would make ``importlib.metadata`` report an installed asyncio-compat to any
program with ``shims/`` on ``sys.path``.  Neither is needed to build from the
sdist: setuptools makes the egg-info again, and PKG-INFO (kept) carries the
metadata.  This backend builds the sdist with setuptools and leaves both out.
Everything else is setuptools' own (``from setuptools.build_meta import *``).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Dict, Optional, Union

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the rest of the PEP 517 hooks)

ConfigSettings = Optional[Dict[str, Union[str, list]]]


def _setuptools_own(name: str) -> bool:
    """Whether the member ``name`` (``top/...``) is one of setuptools' additions."""
    parts = PurePosixPath(name).parts[1:]
    return parts == ("setup.cfg",) or any(part.endswith(".egg-info") for part in parts)


def _rewrite_without_setuptools_files(sdist: Path) -> None:
    kept = io.BytesIO()
    with tarfile.open(sdist, "r:gz") as source, gzip.GzipFile(
        filename="", mode="wb", fileobj=kept, mtime=0
    ) as compressed, tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as target:
        for member in source.getmembers():
            if _setuptools_own(member.name):
                continue
            content = source.extractfile(member) if member.isfile() else None
            target.addfile(member, content)
    sdist.write_bytes(kept.getvalue())


def build_sdist(sdist_directory: str, config_settings: ConfigSettings = None) -> str:
    name: str = _setuptools.build_sdist(sdist_directory, config_settings)
    _rewrite_without_setuptools_files(Path(sdist_directory) / name)
    return name
