"""/api/me: who the API takes the caller to be, and their role (the console shows only what
that role may do; the API still enforces it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from shared.api.deps import any_role, get_settings
from shared.api.identity import Caller
from shared.api.schemas import MeOut
from shared.settings import Settings

router = APIRouter(prefix="/api/me", tags=["identity"])


@router.get("", response_model=MeOut, summary="The caller's name and role")
def me(
    caller: Annotated[Caller, Depends(any_role)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> MeOut:
    assert caller.role is not None  # any_role admits only callers with a role
    return MeOut(name=caller.name, role=caller.role.value, auth_mode=settings.auth_mode.value)
