"""Tenants and API tokens. Tokens are shown once and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.errors import InvalidInput, TenantExists, TenantNotFound, Unauthorized
from membersync.models import ApiToken, Tenant

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TOKEN_PREFIX = "ms_"
MAX_TOKEN_LENGTH = 256


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_slug(slug: str) -> str:
    if not SLUG_PATTERN.fullmatch(slug):
        raise InvalidInput(
            f"invalid tenant slug {slug!r}: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return slug


async def create_tenant(session: AsyncSession, slug: str, name: str | None, now: datetime) -> Tenant:
    validate_slug(slug)
    if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise TenantExists(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name or slug, created_at=now)
    session.add(tenant)
    await session.flush()
    return tenant


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise TenantNotFound(f"unknown tenant {slug!r}")
    return tenant


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return list((await session.scalars(select(Tenant).order_by(Tenant.id))).all())


async def create_token(session: AsyncSession, tenant: Tenant, name: str, now: datetime) -> str:
    """Create an API token for `tenant` and return it in clear; only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(tenant_id=tenant.id, name=name, token_hash=hash_token(token), prefix=token[:10], created_at=now)
    )
    await session.flush()
    return token


async def authenticate(session: AsyncSession, token: str) -> Tenant:
    """The tenant a bearer token belongs to; `Unauthorized` for an unknown, revoked or malformed token."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized()
    statement = (
        select(Tenant)
        .join(ApiToken, ApiToken.tenant_id == Tenant.id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )
    tenant = await session.scalar(statement)
    if tenant is None:
        raise Unauthorized()
    return tenant


async def touch_token(session: AsyncSession, token: str, now: datetime) -> None:
    await session.execute(update(ApiToken).where(ApiToken.token_hash == hash_token(token)).values(last_used_at=now))
