"""How a person reaches a report: a presigned HTTPS link for a report in S3 (with its lifetime said
out loud), the file's path for a local store."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from bot.store import Store

LINK_LIFETIME_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live


@dataclass(frozen=True)
class ReportLink:
    url: str | None  # an https link a browser opens, when there is one
    path: str  # the report's path or URI in the store
    lifetime_s: int | None = None

    @property
    def lifetime_text(self) -> str | None:
        if self.lifetime_s is None:
            return None
        days, rest = divmod(self.lifetime_s, 86400)
        return f"{days} days" if not rest else f"{self.lifetime_s // 3600} hours"


def report_link(store: Store, key: str, lifetime_s: int = LINK_LIFETIME_S) -> ReportLink:
    uri = store.uri_for(key)
    presign = getattr(store, "presigned_url", None)
    if callable(presign):
        return ReportLink(presign(key, lifetime_s, "text/html; charset=utf-8"), uri, lifetime_s)
    if uri.startswith("file://"):
        return ReportLink(None, unquote(urlparse(uri).path))
    return ReportLink(None, uri)
