"""From a request's credential to a :class:`Principal`.

``IMAGEGATE_AUTH=off``: every caller is the one local owner, as before tenants existed.
``required``: a bearer credential is needed: a tenant's API key (``ig_sk_…``), a browser
token, or the admin token. Whatever is wrong with it (missing, unknown, revoked, expired,
tampered) is the same 401, so a refusal tells nothing about what exists.
"""

from __future__ import annotations

import hmac

from imagegate.errors import Unauthorized
from imagegate.settings import Settings
from imagegate.tenancy.keys import KEY_PREFIX, KeyStore
from imagegate.tenancy.principal import LOCAL, OPERATOR, TOKEN_SCOPES, Principal, Scope
from imagegate.tenancy.records import KeyRecord
from imagegate.tenancy.tokens import TokenSigner


def bearer(authorization: str | None) -> str | None:
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore, tokens: TokenSigner) -> None:
        self.required = settings.auth == "required"
        admin = settings.admin_token
        self._admin_token = admin.get_secret_value().encode() if admin else None
        self.keys, self.tokens = keys, tokens

    def principal(self, credential: str | None) -> Principal:
        """The caller of an ordinary route."""
        if not self.required:
            return LOCAL
        return self.identify(credential)

    def admin(self, credential: str | None) -> Principal:
        """The caller of an admin route: the admin token, or a key with the admin scope
        (which manages its own tenant only). Needed whatever the auth mode."""
        is_key = credential is not None and credential.startswith(KEY_PREFIX)
        if self._admin_token is None and not self.required and not is_key:
            raise Unauthorized("The admin API is off: set IMAGEGATE_ADMIN_TOKEN to use it.")
        principal = self.identify(credential)
        principal.require(Scope.ADMIN)
        return principal

    def identify(self, credential: str | None) -> Principal:
        if credential is None:
            raise Unauthorized()
        if self._is_admin_token(credential):
            return OPERATOR
        if credential.startswith(KEY_PREFIX):
            key = self.keys.authenticate(credential)
            if key is None:
                raise Unauthorized()
            return key_principal(key)
        return self._token_principal(credential)

    def _is_admin_token(self, credential: str) -> bool:
        given = credential.encode()
        return self._admin_token is not None and hmac.compare_digest(given, self._admin_token)

    def _token_principal(self, token: str) -> Principal:
        claims = self.tokens.verify(token)
        key = self.keys.usable_key(claims.key_id) if claims else None
        if claims is None or key is None or key.tenant != claims.tenant:
            raise Unauthorized()
        return Principal(
            tenant=key.tenant,
            scopes=TOKEN_SCOPES & key.scopes,
            kind="token",
            key_id=key.id,
            user=claims.user,
            token_id=claims.id,
            max_jobs=claims.max_jobs,
            templates=claims.templates,
            limits=key.limits or {},
            budget=key.budget,
        )


def key_principal(key: KeyRecord) -> Principal:
    return Principal(
        tenant=key.tenant,
        scopes=key.scopes,
        kind="key",
        key_id=key.id,
        limits=key.limits or {},
        budget=key.budget,
    )
