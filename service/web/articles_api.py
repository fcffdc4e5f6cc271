"""POST /api/v1/articles: the site's CMS pushes a batch of articles.

Each article is upserted by GUID or canonical URL, cleaned exactly like a feed
entry. The caller proves itself with the API key (`Authorization: Bearer <key>`
or `X-API-Key`), compared in constant time. Validation errors come back as 422
with the location of the field at fault, e.g. ["articles", 2, "published_at"].
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from service.articles.ingest import ArticleIn, IngestReport, make_article, upsert_articles
from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.web.api_keys import authorized
from service.web.openapi import json_body

router = APIRouter()
SOURCE = "api"


class ArticlePayload(BaseModel):
    """One article as the CMS sends it; text is cleaned after validation."""

    guid: str | None = Field(default=None, max_length=1000)
    url: str = Field(min_length=1, max_length=2000)
    title: str = Field(min_length=1, max_length=1000)
    summary: str = Field(default="", max_length=20_000)
    image_url: str | None = Field(default=None, max_length=2000)
    section: str | None = Field(default=None, max_length=500)
    author: str | None = Field(default=None, max_length=500)
    published_at: AwareDatetime | None = None


class ArticleBatch(BaseModel):
    """What the CMS posts: up to 500 articles, each added or updated by GUID or URL."""

    articles: list[ArticlePayload] = Field(min_length=1, max_length=500)


class IngestCounts(BaseModel):
    added: int
    updated: int
    unchanged: int


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where the error is, e.g. ["articles", 2, "url"].')
    msg: str


class InvalidBatch(BaseModel):
    error: str = "invalid"
    errors: list[FieldError]


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"error": "invalid", "errors": errors}, status_code=422)


def to_articles(batch: ArticleBatch) -> tuple[list[ArticleIn], list[dict[str, Any]]]:
    """Clean every article; the errors name the field at fault."""
    cleaned: list[ArticleIn] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(batch.articles):
        published: datetime | None = item.published_at
        try:
            cleaned.append(make_article(
                url=item.url, title=item.title, guid=item.guid, summary=item.summary,
                image_url=item.image_url, section=item.section, author=item.author,
                published_at=published, source=SOURCE,
            ))
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            errors.append({"loc": ["articles", index, field], "msg": message or str(exc)})
    return cleaned, errors


def store(rt: Runtime, articles: list[ArticleIn]) -> IngestReport:
    with unit_of_work(rt.sessions) as session:
        return upsert_articles(session, articles, utcnow())


@router.post("/api/v1/articles", openapi_extra=json_body(ArticleBatch),
             responses={200: {"model": IngestCounts}, 422: {"model": InvalidBatch}})
async def post_articles(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
    if not rt.settings.api_key:  # off until a key is configured
        return JSONResponse({"error": "not_found"}, status_code=404)
    if not authorized(request, rt.settings.api_key):
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    raw = await request.body()
    try:
        batch = ArticleBatch.model_validate_json(raw)
    except ValidationError as exc:
        return _invalid([{"loc": list(e["loc"]), "msg": e["msg"]}
                         for e in exc.errors(include_url=False, include_input=False)])
    articles, errors = to_articles(batch)
    if errors:
        return _invalid(errors)
    report = await run_in_threadpool(store, rt, articles)
    return JSONResponse({"added": report.added, "updated": report.updated,
                         "unchanged": report.unchanged})
