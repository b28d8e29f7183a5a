"""Who is asking, and may they: tokens, the sign-in cookie, CSRF, and the job rule.

- Every page needs a token (luzia/web/tokens.py). It comes once in the URL (`/?token=…`,
  as `make run` and `luzia web url` print it), is moved into an HttpOnly cookie
  (SameSite=Lax, Secure under TLS) and the browser is sent on to the same page without
  it, so the token stays out of history and Referer headers. Scripts may send
  `Authorization: Bearer <token>` instead.
- A button is a POST form carrying a CSRF token: an HMAC of the caller's token, so it
  needs no server-side session and a rotated token voids it too. A POST whose Origin is
  another site's is refused as well. Bearer requests need no CSRF token (a browser never
  adds that header by itself).
- A job's user (or its submitter, when the broker records one) may cancel or retry it;
  an admin may act on every job.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse

from luzia.config import Config
from luzia.web.tokens import Tokens, admins

COOKIE = "luzia_token"
CSRF_FIELD = "csrf"
COOKIE_AGE = 30 * 24 * 3600      # a month; rotating the token ends it sooner


class Refused(Exception):
    """The request may not go on: an HTTP status and one line saying why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


@dataclass(frozen=True)
class Caller:
    """The person behind a request."""

    user: str
    admin: bool
    csrf: str
    bearer: bool = False          # came with an Authorization header, not the cookie

    def may_act(self, job: dict[str, Any]) -> bool:
        return self.admin or self.user in (job.get("user"), job.get("submitter"))


def cookie_name(request: Request) -> str:
    """Browsers keep cookies per host, not per port: the port in the name keeps two
    dashboards on one host (two fleets, two `make run`s) from signing each other out."""
    url = request.url
    return f"{COOKIE}_{url.port or (443 if url.scheme == 'https' else 80)}"


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"luzia-web csrf", hashlib.sha256).hexdigest()[:32]


class Auth:
    def __init__(self, cfg: Config, tokens: Tokens) -> None:
        self.tokens = tokens
        self.admins = admins(cfg)
        self.secure = bool(cfg.web.tls_cert and cfg.web.tls_key)
        self.public = urlsplit(cfg.web.url).netloc       # the address behind a proxy, if any

    def caller(self, request: Request) -> Caller:
        """The caller, or Refused(401) without a valid token."""
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        token = bearer or request.cookies.get(cookie_name(request), "")
        user = self.tokens.user_of(token)
        if user is None:
            raise Refused(401, "this page needs a token: open the URL that `make run` or "
                               "`luzia web url` prints" if not token else
                               "this token is not (or no longer) valid: get the current URL "
                               "with `luzia web url`")
        return Caller(user, user in self.admins, csrf_for(token), bool(bearer))

    def sign_in(self, request: Request) -> RedirectResponse | None:
        """For `?token=…`: the cookie and a redirect to the same URL without the token;
        None when the URL has no token. Raises Refused(401) for an unknown token."""
        token = request.query_params.get("token")
        if token is None:
            return None
        if self.tokens.user_of(token) is None:
            raise Refused(401, "this token is not (or no longer) valid: get the current URL "
                               "with `luzia web url`")
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(cookie_name(request), token, max_age=COOKIE_AGE, httponly=True, samesite="lax",
                            secure=self.secure, path="/")
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def check_post(self, request: Request, caller: Caller, form: Any) -> None:
        """Refused(403) unless a cookie-signed POST carries the caller's CSRF token and
        comes from this site."""
        if caller.bearer:
            return
        origin = request.headers.get("origin")
        allowed = {request.headers.get("host"), self.public} - {None, ""}
        if origin and urlsplit(origin).netloc not in allowed:
            raise Refused(403, f"refused: the request came from another site ({origin})")
        sent = form.get(CSRF_FIELD) if form is not None else None
        if not isinstance(sent, str) or not hmac.compare_digest(sent, caller.csrf):
            raise Refused(403, "refused: the form's CSRF token is missing or stale; "
                               "reload the page and try again")
