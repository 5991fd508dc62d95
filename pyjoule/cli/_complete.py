"""Shell completion of the ``pyjoule`` command's arguments from the cache: run ids
(``status``, ``cancel``) and function names (``runs --function``, ``cache clear``).

click does the shell side (``_PYJOULE_COMPLETE=bash_source pyjoule`` prints the
script, see docs/cli.md); these functions only list candidates. They read the cache
the command would use (``--cache`` if already typed) and never create one, and a
completion never fails: whatever goes wrong, no candidates.
"""

from __future__ import annotations

from click.shell_completion import CompletionItem


def _store(ctx):
    """The store of the cache the command would use, or None if there is none."""
    from .._api import existing_cache
    from .._errors import CacheError
    from ._args import default_cache

    try:
        return existing_cache(ctx.meta.get("pyjoule.cache") or default_cache()[0])
    except CacheError:
        return None


def run_ids(ctx, param, incomplete: str) -> list[CompletionItem]:
    """Run ids starting with ``incomplete``, newest first, each with its function and
    state as the help zsh and fish show."""
    try:
        store = _store(ctx)
        if store is None:
            return []
        return [CompletionItem(r["run_id"], help=f"{r['name']}, {r['state']}")
                for r in reversed(store.list_runs()) if r["run_id"].startswith(incomplete)]
    except Exception:  # noqa: BLE001 - a completion must never print a traceback
        return []


def functions(ctx, param, incomplete: str) -> list[CompletionItem]:
    """Function names (full, and their last part, as the commands take them) starting
    with ``incomplete``."""
    try:
        store = _store(ctx)
        if store is None:
            return []
        names = {v["name"] for v in store.versions()} | \
            {r["name"] for r in store.list_runs() if r["name"]}
        short = {n.rsplit(".", 1)[-1] for n in names}
        return [CompletionItem(n) for n in sorted(names | short) if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []
