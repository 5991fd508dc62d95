"""Function identity: one hash for a function and everything of the user's it reaches.

Half of every cache key (API section 5). Code is hashed through its normalised AST, so
comments, docstrings, formatting and position in the file do not count; bytecode is the
fallback when there is no source. The user's helpers, classes and global constants are
followed; third-party code is covered by distribution name and version only.

The modules, lowest first: :mod:`.constants` (stable text of constants, the digest),
:mod:`.places` (whose code a file is: the user's, a library's; module names),
:mod:`.code` (digests of functions, classes and module files), :mod:`.walk` (the walk
over everything a function reaches: :func:`identify`) and :mod:`.changes` (how two
identities differ, in words).
"""

from __future__ import annotations

# ``x as x``: private names other modules import from here, re-exported on purpose;
from . import code, places
from .changes import describe_change
from .code import _code_digest as _code_digest
from .constants import _digest as _digest
from .places import _distribution as _distribution
from .places import _is_library_file as _is_library_file
from .places import is_under, module_label, user_stacklevel
from .walk import Identity, identify

__all__ = ["Identity", "clear_caches", "describe_change", "identify", "is_under",
           "module_label", "user_stacklevel"]


def clear_caches() -> None:
    """Forget everything identities remember between calls in this process (digests
    of code, classes and files; which files are whose; distribution versions)."""
    code.clear_caches()
    places.clear_caches()
