"""What the chat session talks to besides the model's text: the store, searched through a
retriever that reconnects after the database went away, and the models, loaded in the
background while the greeting prints.

    models = BackgroundModels(lambda: load_llm(), embedder).start()
    retriever = StoreRetriever(url, embedder)
    retriever(SearchRequest("Kyoto"), 10)    # a SearchResult, or DatabaseDown for this turn
"""
from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Callable

import settings

if TYPE_CHECKING:
    from llm_backend import ChatModel
    from retrieve_related_content_from_db import Hit, SearchRequest, SearchResult


class DatabaseDown(Exception):
    """The database could not be reached for this turn; the next turn tries again."""


# ---------------------------------------------------------------- retrieval over the store


class StoreRetriever:
    """Search through the store, reconnecting on the next turn after the database went away."""

    def __init__(self, url: str, embedder, store=None, connect: Callable | None = None,
                 search: Callable | None = None):
        self.url = url
        self.embedder = embedder
        self.store = store
        self._connect = connect
        self._search = search

    def _open(self):
        if self.store is None:
            connect = self._connect
            if connect is None:
                from store import Store

                # A reader idle between turns must hold no lock a rebuild's swap would wait for.
                connect = functools.partial(Store, autocommit=True)
            try:
                self.store = connect(self.url)
            except settings.UserError as err:
                raise DatabaseDown(f"the database is not reachable ({err})")
        return self.store

    def _drop(self) -> None:
        try:
            self.store.close()
        except Exception:
            pass  # already broken; nothing more to release
        self.store = None

    def __call__(self, request: "SearchRequest", k: int) -> "SearchResult":
        import psycopg

        search = self._search
        if search is None:
            from retrieve_related_content_from_db import search
        store = self._open()
        try:
            return search(store, self.embedder, request, k=k)
        except psycopg.Error as err:
            self._drop()
            from database import first_error_line

            raise DatabaseDown(f"the database is not reachable ({first_error_line(err)})")

    def window(self, request: "SearchRequest") -> list["Hit"]:
        """Every passage of the request's window, oldest first; raises DatabaseDown, and
        EmptyIndexError before anything was ingested."""
        import psycopg

        from retrieve_related_content_from_db import EMPTY_INDEX_HINT, EmptyIndexError, window_passages

        store = self._open()
        try:
            if store.count_chunks() == 0:  # no table yet is not a database failure
                raise EmptyIndexError(EMPTY_INDEX_HINT)
            return window_passages(store, request)
        except psycopg.Error as err:
            self._drop()
            from database import first_error_line

            raise DatabaseDown(f"the database is not reachable ({first_error_line(err)})")

    def count_chunks(self) -> int:
        """Stored chunks (0 for an empty or new index); raises DatabaseDown."""
        import psycopg

        try:
            return self._open().count_chunks()
        except psycopg.Error as err:
            self._drop()
            raise DatabaseDown(f"the database is not reachable ({err.__class__.__name__})")


# ---------------------------------------------------------------- models in the background


class ModelLoadFailed(settings.UserError):
    """A model could not be loaded: the chat cannot answer, so it ends with this one line."""


class BackgroundModels:
    """Loads the models while the greeting prints and the user types; `llm()` waits for them.

    The embedding model (torch) loads in a thread. A transformers LLM loads in that thread too;
    an MLX one loads in the main thread at the first question, because MLX arrays belong to
    the thread that made them and answers stream from the main thread.
    """

    def __init__(self, load_llm: Callable[[], "ChatModel"], embedder=None, in_thread: bool = True,
                 after: Callable[["ChatModel"], None] | None = None):
        self._load_llm = load_llm
        self._after = after  # run in the waiting (main) thread once the LLM is there
        self._embedder = embedder
        self._in_thread = in_thread
        self._llm: "ChatModel | None" = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="load-models", daemon=True)

    def start(self) -> "BackgroundModels":
        """Begin loading; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            load = getattr(self._embedder, "load", None)
            if load is not None:
                load()
            if self._in_thread:
                self._llm = self._load_llm()
        except BaseException as err:  # re-raised in the main thread by llm()
            self._error = err

    def ready(self) -> bool:
        """True once `llm()` has nothing left to wait for."""
        return not self._thread.is_alive() and (self._llm is not None or self._error is not None)

    def llm(self) -> "ChatModel":
        """The chat model, once loaded; a load failure is ModelLoadFailed (one line)."""
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            if self._llm is None:
                self._llm = self._load_llm()
        except settings.UserError as err:
            raise ModelLoadFailed(str(err)) from None
        if self._after is not None:
            after, self._after = self._after, None
            after(self._llm)
        return self._llm

