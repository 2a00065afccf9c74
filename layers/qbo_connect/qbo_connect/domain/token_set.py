"""The OAuth token set Intuit hands out, as a value with absolute expiry times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from typing import Any

from qbo_connect import intuit
from qbo_connect.records import record


@record
class TokenSet:
    """Intuit's tokens and when each expires (epoch seconds)."""

    # repr=False keeps tokens out of reprs, tracebacks and log lines.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    refresh_token_expires_at: float
    refresh_token_hard_expires_at: float | None = None
    scopes: tuple[str, ...] = ()
    obtained_at: float = 0.0
    token_type: str = "bearer"
    # Who consented, as the ID token of a code exchange with the openid scope names them. Not part of
    # the stored document: the userinfo answer is checked against it once, at consent.
    id_token_subject: str | None = field(default=None, compare=False)

    @classmethod
    def from_token_response(cls, response: Mapping[str, Any], *, now: float, scopes: tuple[str, ...]) -> TokenSet:
        """Turn Intuit's relative lifetimes (seconds) into absolute epoch times, counted from `now`."""
        access_token = response.get("access_token")
        refresh_token = response.get("refresh_token")
        if not isinstance(access_token, str) or not access_token or not isinstance(refresh_token, str):
            raise ValueError("the token response has no access_token or refresh_token")
        hard_expires_in = response.get(intuit.REFRESH_TOKEN_HARD_EXPIRES_IN_FIELD)
        granted = response.get("scope")
        return cls(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=now + float(response.get("expires_in") or intuit.ACCESS_TOKEN_DEFAULT_SECONDS),
            refresh_token_expires_at=now
            + float(response.get(intuit.REFRESH_TOKEN_EXPIRES_IN_FIELD) or intuit.REFRESH_TOKEN_DEFAULT_SECONDS),
            refresh_token_hard_expires_at=now + float(hard_expires_in) if hard_expires_in else None,
            scopes=tuple(granted.split()) if isinstance(granted, str) and granted else scopes,
            obtained_at=now,
            token_type=str(response.get("token_type") or "bearer").lower(),
        )

    def with_hard_expiry_from(self, previous: TokenSet | None) -> TokenSet:
        """A refresh answer may leave the hard expiry out; the grant's end does not move."""
        if self.refresh_token_hard_expires_at is not None or previous is None:
            return self
        return replace(self, refresh_token_hard_expires_at=previous.refresh_token_hard_expires_at)

    def seconds_valid(self, now: float) -> float:
        return self.expires_at - now

    def is_valid_for(self, seconds: float, now: float) -> bool:
        return self.seconds_valid(now) >= seconds

    @property
    def grant_ends_at(self) -> float:
        """When only a person reconnecting helps: the earlier of the rolling and the hard expiry."""
        if self.refresh_token_hard_expires_at is None:
            return self.refresh_token_expires_at
        return min(self.refresh_token_expires_at, self.refresh_token_hard_expires_at)

    def to_document(self) -> dict[str, Any]:
        """The `token_set` object of the connection secret: a public contract (README)."""
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": int(self.expires_at),
            "refresh_token": self.refresh_token,
            "refresh_token_expires_at": int(self.refresh_token_expires_at),
            "refresh_token_hard_expires_at": (
                None if self.refresh_token_hard_expires_at is None else int(self.refresh_token_hard_expires_at)
            ),
            "scopes": list(self.scopes),
            "obtained_at": int(self.obtained_at),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TokenSet:
        hard = document.get("refresh_token_hard_expires_at")
        return cls(
            access_token=document["access_token"],
            refresh_token=document["refresh_token"],
            expires_at=float(document["expires_at"]),
            refresh_token_expires_at=float(document["refresh_token_expires_at"]),
            refresh_token_hard_expires_at=None if hard is None else float(hard),
            scopes=tuple(document.get("scopes") or ()),
            obtained_at=float(document.get("obtained_at") or 0),
            token_type=document.get("token_type", "bearer"),
        )
