"""Local paths built from untrusted names (values read from S3, a request or a form) stay under their root.

``safe_join`` is the one place that turns such a name into a path: it refuses absolute parts, ``..``
and anything (a symlink included) that resolves outside the root, so a ``model_version`` of
``../../etc/x`` read from the bucket can never make the worker write outside its cache.
"""

from __future__ import annotations

from pathlib import Path


class UnsafePath(ValueError):
    """A name would lead outside the directory it must stay in."""


def safe_join(root: str | Path, *parts: str) -> Path:
    """``root / parts...`` resolved, or UnsafePath when the result is not strictly under ``root``."""
    base = Path(root).resolve()
    for part in parts:
        if not isinstance(part, str) or not part or "\x00" in part or Path(part).is_absolute():
            raise UnsafePath(f"{part!r} is not a relative name: refusing to build a path under {base} from it")
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise UnsafePath(f"{'/'.join(parts)!r} leads outside {base} (to {target}): refusing it")
    return target
