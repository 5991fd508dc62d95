"""``_Session``: what one call of an experiment finds once (its options, store and
identity), and the throw-away cache of ``cache=False``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._store import Store

if TYPE_CHECKING:
    from .._identity import Identity
    from .._options import Resolved
    from .decorated import Experiment


class _Session:
    """One call's resolved options, store and identity (each found once); a
    throw-away cache for ``cache=False`` (see :mod:`._nocache`: its pool dies with
    this process and removes it)."""

    store: Store
    resolved: Resolved
    identity: Identity
    func_id: str

    def __init__(self, exp: Experiment[..., Any]):
        self.exp = exp
        self.tmp: str | None = None

    def __enter__(self) -> _Session:
        self.resolved = resolved = self.exp._resolved()
        if resolved.cache is False:
            from .. import _nocache

            self.tmp = _nocache.create()
            self.store = Store(self.tmp)
        else:
            self.store = self.exp._store(resolved)
        self.identity = self.exp._identity_for(self.store)
        self.func_id = self.identity.func_id
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            from .. import _nocache

            self.store.close()
            _nocache.remove(self.tmp)
