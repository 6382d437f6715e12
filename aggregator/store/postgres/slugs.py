"""The slugs worked out for names without a pinned one, kept in the PostgreSQL
database (config.loader.SlugShelf): every node of a cluster reads the same ones, so a
name's slug is worked out once for all of them and every node publishes the same URLs."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import psycopg

from aggregator.config.loader import MADE_SLUG, made_slugs
from aggregator.config.slugs import KnownSlugs
from aggregator.store.postgres.schema import KNOWN_SLUGS, bytewise

# As the migration makes it (text compared byte by byte).
KNOWN_SLUGS_TABLE = bytewise([KNOWN_SLUGS])[0]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5  # seconds: the store's own connection waits longer, and says why
WHOLE_SLUG = f"^{MADE_SLUG.pattern}$"  # PostgreSQL's ~ searches: anchored here


class PostgresSlugs:
    def __init__(self, url: str) -> None:
        self.url = url
        self._unreachable = False  # a server that did not answer is not asked twice

    def read(self) -> KnownSlugs:
        # Read when a name first needs a slug: a config with every slug pinned connects
        # for none.
        return KnownSlugs(load=self._known)

    def _known(self) -> Mapping[str, str]:
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT) as conn:
                rows = conn.execute("SELECT name, slug FROM known_slugs").fetchall()
        except psycopg.OperationalError as exc:  # no server, refused...
            self._unreachable = True
            log.debug("could not read the kept slugs: %s", exc)
            return {}
        except psycopg.Error as exc:  # no table yet: a new database
            log.debug("could not read the kept slugs: %s", exc)
            return {}
        return made_slugs(dict(rows))

    def keep(self, known: KnownSlugs) -> None:
        """Add the slugs worked out now. A name another node kept meanwhile keeps that
        node's slug (this node reads it at its next config load); a kept one this
        program would not make (written by other means) is replaced."""
        if self._unreachable:
            return
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT) as conn:
                conn.execute(KNOWN_SLUGS_TABLE)
                conn.cursor().executemany(
                    """INSERT INTO known_slugs (name, slug) VALUES (%s, %s)
                       ON CONFLICT (name) DO UPDATE SET slug = EXCLUDED.slug
                       WHERE known_slugs.slug !~ %s""",
                    [(name, slug, WHOLE_SLUG) for name, slug in sorted(known.added.items())],
                )
        except psycopg.Error as exc:
            log.debug("could not keep the slugs: %s", exc)
