"""The catalog store's database plumbing: engine, SQLite locking, retries, transactions, upserts, loading.

SQLite: WAL mode, `busy_timeout`, write transactions opened with `BEGIN IMMEDIATE` (two writers queue on
the lock instead of failing at commit), and "database is locked" retried with backoff. PostgreSQL: upserts
with `ON CONFLICT DO UPDATE`; serialization failures and deadlocks retried the same way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from registry.catalog_migrations import migrate
from registry.catalog_tables import STORE_VERSION, metadata, schema_version_table
from registry.errors import CatalogError
from registry.schema import SCHEMA_VERSION, utcnow

_T = TypeVar("_T")
_R = TypeVar("_R", bound=BaseModel)

_BUSY_TIMEOUT_MS = 30_000
_RETRY_DEADLINE_S = 120.0
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_PG_SETUP_LOCK = 0x6361_7461  # advisory lock id serialising table creation ("cata")


def _is_retryable(exc: SQLAlchemyError) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _PG_RETRYABLE:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


class CatalogDatabase:
    """A database holding the catalog tables. Thread-safe; several processes may write it at once."""

    def __init__(self, url: str) -> None:
        self._display = _safe_url(url)
        try:
            parsed = sa.make_url(url)
        except ArgumentError as exc:
            raise CatalogError(
                f"catalog url {url!r} is not a SQLAlchemy URL; set [catalog] url to e.g. "
                "'sqlite:///path/catalog.db' or 'postgresql+psycopg://user@host/db'"
            ) from exc
        self._sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self._sqlite:
            database = parsed.database or ""
            memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
            kwargs["connect_args"] = {"timeout": _BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
            if memory:
                kwargs["poolclass"] = StaticPool
            self._memory = memory
        else:
            kwargs["pool_pre_ping"] = True
            self._memory = False
        try:
            self._engine: Engine = sa.create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise CatalogError(
                f"cannot open the catalog at {self._display}: {exc}; for PostgreSQL install the extra "
                "'model-curation[postgres]' and use a 'postgresql+psycopg://' URL"
            ) from exc
        if self._sqlite:
            sa.event.listen(self._engine, "connect", self._on_sqlite_connect)
            sa.event.listen(self._engine, "begin", self._on_sqlite_begin)
        self._local = threading.local()
        self._ensure_schema()

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._display

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ plumbing

    def _on_sqlite_connect(self, dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit transactions are wrong).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not self._memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @staticmethod
    def _on_sqlite_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("catalog_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    def _active(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        return conn

    def _retrying(self, what: str, attempt: Callable[[], _T]) -> _T:
        deadline = time.monotonic() + _RETRY_DEADLINE_S
        delay = 0.02
        while True:
            try:
                return attempt()
            except SQLAlchemyError as exc:
                if _is_retryable(exc) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                    delay = min(delay * 2, 1.0)
                    continue
                raise self._error(what, exc) from exc

    def _error(self, what: str, exc: SQLAlchemyError) -> CatalogError:
        hint = (
            "another process held the database lock too long; retry, or use PostgreSQL for many writers"
            if _is_retryable(exc)
            else "check that the database is reachable and writable ([catalog] url / data_dir)"
        )
        detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
        return CatalogError(f"catalog {self._display}: {what} failed: {detail.strip()}; {hint}")

    def _write(self, what: str, fn: Callable[[Connection], _T]) -> _T:
        active = self._active()
        if active is not None:
            return fn(active)

        def attempt() -> _T:
            with self._engine.connect() as conn:
                conn.execution_options(catalog_write=True)
                with conn.begin():
                    return fn(conn)

        return self._retrying(what, attempt)

    def _read(self, what: str, fn: Callable[[Connection], _T]) -> _T:
        active = self._active()
        if active is not None:
            return fn(active)

        def attempt() -> _T:
            with self._engine.connect() as conn, conn.begin():
                return fn(conn)

        return self._retrying(what, attempt)

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Several writes as one transaction: `with store.transaction(): publish(...); set_entry_status(...)`.

        Every store call made by this thread inside the block joins it; nested blocks join the outer one.
        An exception rolls everything back. On SQLite the write lock is taken at the start of the block.
        """
        if self._active() is not None:
            yield self
            return

        def begin() -> tuple[Connection, sa.RootTransaction]:
            conn = self._engine.connect()
            try:
                conn.execution_options(catalog_write=True)
                return conn, conn.begin()
            except BaseException:
                conn.close()
                raise

        conn, trans = self._retrying("starting a transaction", begin)
        self._local.conn = conn
        try:
            try:
                yield self
            except BaseException:
                trans.rollback()
                raise
            try:
                trans.commit()
            except SQLAlchemyError as exc:
                raise self._error("committing a transaction", exc) from exc
        finally:
            self._local.conn = None
            conn.close()

    def _ensure_schema(self) -> None:
        def setup(conn: Connection) -> None:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SETUP_LOCK)))
            metadata.create_all(conn)
            row = conn.execute(
                sa.select(schema_version_table.c.version, schema_version_table.c.record_schema).where(
                    schema_version_table.c.component == "catalog"
                )
            ).first()
            if row is None:
                conn.execute(
                    schema_version_table.insert().values(
                        component="catalog",
                        version=STORE_VERSION,
                        record_schema=SCHEMA_VERSION,
                        updated_at=utcnow(),
                    )
                )
            elif row.version > STORE_VERSION or row.record_schema > SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog {self._display} has table layout v{row.version} with records v{row.record_schema}, "
                    f"newer than this code (v{STORE_VERSION}, records v{SCHEMA_VERSION}); upgrade model-curation "
                    "before using it"
                )
            elif row.version < STORE_VERSION or row.record_schema < SCHEMA_VERSION:
                migrate(conn, row.version, row.record_schema)

        self._write("creating the tables", setup)

    def schema_version(self) -> int:
        """The table layout version recorded in the database."""

        def read(conn: Connection) -> int:
            value = conn.execute(
                sa.select(schema_version_table.c.version).where(schema_version_table.c.component == "catalog")
            ).scalar_one()
            return int(value)

        return self._read("reading the schema version", read)

    def _upsert(self, conn: Connection, table: sa.Table, keys: Sequence[str], values: dict[str, Any]) -> None:
        """Insert `values`, or replace the row with the same `keys` (atomic on SQLite and PostgreSQL)."""
        updates = [name for name in values if name not in keys]
        if conn.dialect.name == "sqlite":
            lite = sqlite_dialect.insert(table).values(**values)
            conn.execute(
                lite.on_conflict_do_update(index_elements=list(keys), set_={n: lite.excluded[n] for n in updates})
            )
        elif conn.dialect.name == "postgresql":
            post = pg_dialect.insert(table).values(**values)
            conn.execute(
                post.on_conflict_do_update(index_elements=list(keys), set_={n: post.excluded[n] for n in updates})
            )
        else:
            where = sa.and_(*(table.c[k] == values[k] for k in keys))
            result = conn.execute(table.update().where(where).values(**{n: values[n] for n in updates}))
            if result.rowcount == 0:
                conn.execute(table.insert().values(**values))

    def _load(self, model: type[_R], data: str, what: str) -> _R:
        try:
            return model.model_validate_json(data)
        except ValidationError as exc:
            raise CatalogError(
                f"catalog {self._display}: stored {what} no longer loads as {model.__name__} "
                f"({exc.error_count()} errors, first: {exc.errors()[0]['msg']}); it was written by an "
                "incompatible version: re-run the stage that recorded it"
            ) from exc

    def _load_all(self, model: type[_R], rows: Sequence[Any], what: str) -> list[_R]:
        return [self._load(model, row.data, what) for row in rows]
