"""The pages behind the links in account emails: confirm an address, reset a password,
refuse a withdrawal, answer "was this you?" (the takeover defence, ATO-2).

Until the web console exists, an emailed link must still open something. These pages are
plain HTML forms: no script, no style, nothing loaded from anywhere.

How the token travels, and why it is safe:

- The link carries the token in the query string (`/verify-email?token=...`). A fragment
  (`#token=...`) never reaches the server, and without script a page cannot read it, so a
  script-free page has no other place to take it from. The usual leak of a query string is
  the Referer header; every response carries `Referrer-Policy: no-referrer` (and the pages
  load no resources and link nowhere), the access log records the path without the query,
  and the token is single-use and short-lived, so a copy left in the browser history is
  worthless once the form was sent.
- GET never acts. It only renders a form with the token in a hidden field; the action
  happens on POST. Mail scanners and link previewers fetch GET links on their own, and must
  not confirm an address or spend a reset token for the user.
- CSRF: the POST needs no cookie and no session; the token in the form is its only
  authority, so a forged cross-site POST can do nothing that the holder of the token could
  not do through the API anyway. Still, as defence in depth, a browser's fetch metadata
  (`Sec-Fetch-Site`) must say the form came from this origin, and an `Origin` header must
  be our public origin or `null` (browsers send `null` on every POST from a page under
  `Referrer-Policy: no-referrer`, which ours are). The page's CSP lets forms post to this
  origin only (`form-action 'self'`) and forbids framing (`frame-ancestors 'none'`).
- Every value written into HTML is escaped, and the token is echoed into the form only
  after it has the shape of a token we issue.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tradeguard.core.errors import InvalidInput, NotFound, TradeguardError
from tradeguard.db.engine import unit_of_work
from tradeguard.fraud.container import FraudServices
from tradeguard.fraud.domain import PromptAnswer
from tradeguard.fraud.service import PROMPT_PATH
from tradeguard.funds.container import FundsServices
from tradeguard.funds.domain import WithdrawalStatus
from tradeguard.funds.withdrawals import REFUSE_PATH
from tradeguard.identity.guard import Services, request_info, state_cache
from tradeguard.web.route_policy import public

# The strict API policy plus the one thing a form needs: posting back to this origin.
PAGE_CSP: Final = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
# A token, a password of at most 1024 characters and a code, URL-encoded, fit many times over.
MAX_FORM_BYTES: Final = 16 * 1024
# The tokens we email are URL-safe base64 of 32 random bytes; 16 to 128 characters of that
# alphabet is what the API accepts too.
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAX_PASSWORD_CHARS: Final = 1024
RESET_METHODS: Final = {"totp": "Authenticator app code", "backup_code": "Backup code"}

VERIFY_EMAIL_PATH: Final = "/verify-email"
CONFIRM_EMAIL_PATH: Final = "/confirm-email"
RESET_PASSWORD_PATH: Final = "/reset-password"  # noqa: S105 - a URL path, not a secret
REFUSE_WITHDRAWAL_PATH: Final = REFUSE_PATH

router = APIRouter(include_in_schema=False)


class _FormRefused(Exception):
    """The POST is not a form this page sent; answered with a page, never acted upon."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Page:
    title: str
    paragraphs: tuple[str, ...] = ()
    form: str = ""


def _render(page: _Page, status: int = 200) -> HTMLResponse:
    text = "".join(f"<p>{html.escape(p)}</p>" for p in page.paragraphs)
    body = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{html.escape(page.title)} - tradeguard</title></head>"
        f"<body><main><h1>{html.escape(page.title)}</h1>{text}{page.form}</main></body></html>\n"
    )
    return HTMLResponse(body, status_code=status, headers={"content-security-policy": PAGE_CSP})


def _hidden_token(token: str) -> str:
    return f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'


def _broken_link(status: int = 400) -> HTMLResponse:
    return _render(
        _Page(
            "This link does not work",
            (
                "The link is incomplete, was already used, or has expired.",
                "Open the link from the newest email again, or ask for a new one.",
            ),
        ),
        status,
    )


def _refused(refusal: _FormRefused) -> HTMLResponse:
    return _render(_Page("The form was not accepted", (refusal.message,)), refusal.status)


def _valid_token(value: str | None) -> str | None:
    return value if value is not None and _TOKEN.fullmatch(value) else None


async def _read_form(request: Request, fields: frozenset[str]) -> dict[str, str]:
    """The submitted form: URL-encoded, from our origin, each known field at most once."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    expected = request.app.state.runtime.settings.public_origin
    if (site is not None and site != "same-origin") or origin not in {None, "null", expected}:
        raise _FormRefused(403, "Forms are accepted only from this site's own pages.")
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise _FormRefused(415, "Send the form from the page that shows it.")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise _FormRefused(413, "The form is larger than any form this page sends.")
    try:
        parsed = parse_qs(
            raw.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(raw),
            encoding="utf-8",
            errors="strict",
            max_num_fields=len(fields),
        )
    except (UnicodeDecodeError, ValueError):
        raise _FormRefused(400, "The form could not be read; send it again.") from None
    if not set(parsed) <= fields or any(len(values) != 1 for values in parsed.values()):
        raise _FormRefused(400, "The form has fields this page does not send.")
    return {name: values[0] for name, values in parsed.items()}


# Confirming an address: after sign-up, and after a change of address ---------------------


def _confirm_form(path: str, token: str, button: str) -> str:
    return (
        f'<form method="post" action="{path}">{_hidden_token(token)}'
        f'<button type="submit">{html.escape(button)}</button></form>'
    )


@router.get(VERIFY_EMAIL_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def verify_email_page(token: str | None = None) -> HTMLResponse:
    """The emailed sign-up link: a button that confirms the address (GET changes nothing)."""
    valid = _valid_token(token)
    if valid is None:
        return _broken_link()
    return _render(
        _Page(
            "Confirm your email address",
            ("Press the button to confirm this address for your tradeguard account.",),
            _confirm_form(VERIFY_EMAIL_PATH, valid, "Confirm my email address"),
        )
    )


@router.post(VERIFY_EMAIL_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def verify_email_submit(request: Request, services: Services) -> HTMLResponse:
    try:
        form = await _read_form(request, frozenset({"token"}))
    except _FormRefused as refusal:
        return _refused(refusal)
    token = _valid_token(form.get("token"))
    if token is None:
        return _broken_link()
    async with services.unit_of_work() as session:
        ok = await services.accounts.verify_email(
            session, token=token, request=request_info(request)
        )
    if not ok:
        return _broken_link()
    return _render(
        _Page(
            "Email address confirmed",
            ("Your email address is confirmed. You can close this page and sign in.",),
        )
    )


@router.get(CONFIRM_EMAIL_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def confirm_email_page(token: str | None = None) -> HTMLResponse:
    """The link sent to a new address: a button that moves the account to it."""
    valid = _valid_token(token)
    if valid is None:
        return _broken_link()
    return _render(
        _Page(
            "Confirm your new email address",
            ("Press the button to use this address for your tradeguard account from now on.",),
            _confirm_form(CONFIRM_EMAIL_PATH, valid, "Use this email address"),
        )
    )


@router.post(CONFIRM_EMAIL_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def confirm_email_submit(request: Request, services: Services) -> HTMLResponse:
    try:
        form = await _read_form(request, frozenset({"token"}))
    except _FormRefused as refusal:
        return _refused(refusal)
    token = _valid_token(form.get("token"))
    if token is None:
        return _broken_link()
    async with services.unit_of_work() as session:
        ok = await services.accounts.confirm_email_change(
            session, token=token, request=request_info(request)
        )
    if not ok:
        return _broken_link()
    return _render(
        _Page(
            "Email address changed",
            ("Your account now uses this email address. You can close this page.",),
        )
    )


# Resetting a password ---------------------------------------------------------------------


def _reset_form(token: str) -> str:
    options = '<option value="">No second factor</option>' + "".join(
        f'<option value="{value}">{html.escape(label)}</option>'
        for value, label in RESET_METHODS.items()
    )
    return (
        f'<form method="post" action="{RESET_PASSWORD_PATH}">{_hidden_token(token)}'
        '<p><label>New password<br><input type="password" name="new_password" '
        f'autocomplete="new-password" required maxlength="{MAX_PASSWORD_CHARS}"></label></p>'
        "<p>If your account has a second factor, confirm with it:</p>"
        f'<p><label>Method<br><select name="method">{options}</select></label></p>'
        '<p><label>Code<br><input type="text" name="code" autocomplete="one-time-code" '
        'inputmode="text" maxlength="32"></label></p>'
        '<button type="submit">Set the new password</button></form>'
    )


def _reset_page(token: str, *, status: int = 200, problem: str | None = None) -> HTMLResponse:
    paragraphs = (problem,) if problem else ("Choose a new password for your account.",)
    return _render(
        _Page("Choose a new password", (*paragraphs,), _reset_form(token)), status=status
    )


@router.get(RESET_PASSWORD_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def reset_password_page(token: str | None = None) -> HTMLResponse:
    """The emailed reset link: a form for the new password (GET spends nothing)."""
    valid = _valid_token(token)
    if valid is None:
        return _broken_link()
    return _reset_page(valid)


def _reset_fields(form: dict[str, str]) -> tuple[str, str | None, str | None]:
    password = form.get("new_password", "")
    method = form.get("method") or None
    code = form.get("code") or None
    if not password or len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInput(f"Enter a new password of at most {MAX_PASSWORD_CHARS} characters.")
    if method is not None and method not in RESET_METHODS:
        raise InvalidInput("Choose one of the listed second-factor methods.")
    if (method is None) != (code is None) or (code is not None and not 4 <= len(code) <= 32):
        raise InvalidInput("Give the method together with its code (4 to 32 characters).")
    return password, method, code


@router.post(RESET_PASSWORD_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def reset_password_submit(request: Request, services: Services) -> HTMLResponse:
    try:
        form = await _read_form(request, frozenset({"token", "new_password", "method", "code"}))
    except _FormRefused as refusal:
        return _refused(refusal)
    token = _valid_token(form.get("token"))
    if token is None:
        return _broken_link()
    try:
        password, method, code = _reset_fields(form)
        async with services.unit_of_work() as session:
            revoked = await services.accounts.reset_password(
                session,
                token=token,
                new_password=password,
                method=method,
                code=code,
                request=request_info(request),
            )
    except TradeguardError as exc:
        # Our own messages (password rules, "confirm with a backup code ..."), never input;
        # the form is shown again with the same token, which was not spent.
        page = _reset_page(token, status=exc.status, problem=exc.client_detail)
        # The same protocol headers as the API's answer (Retry-After on a 429 the page's text
        # refers to).
        page.headers.update(exc.headers())
        return page
    if revoked is None:
        if method is not None:
            # The token may still be good (a wrong code spends one of its few attempts).
            return _reset_page(
                token, status=400, problem="That code was not accepted, or the link expired."
            )
        return _broken_link()
    state_cache(request).drop(*revoked)
    return _render(
        _Page(
            "Password changed",
            (
                "Your password is changed and every session was signed out.",
                "Sign in with the new password.",
            ),
        )
    )


# Refusing a withdrawal: the "this was not me" link of the withdrawal email (ATO-2) --------


@router.get(REFUSE_WITHDRAWAL_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def refuse_withdrawal_page(token: str | None = None) -> HTMLResponse:
    """The link in a withdrawal's email: a button that refuses it (GET changes nothing)."""
    valid = _valid_token(token)
    if valid is None:
        return _broken_link()
    return _render(
        _Page(
            "Refuse this withdrawal",
            (
                "If you did not ask for this withdrawal, press the button: it is stopped and "
                "its cash stays in your account.",
                "Then change your password and review your devices.",
            ),
            _confirm_form(REFUSE_WITHDRAWAL_PATH, valid, "This was not me: refuse it"),
        )
    )


@router.post(REFUSE_WITHDRAWAL_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def refuse_withdrawal_submit(request: Request) -> HTMLResponse:
    try:
        form = await _read_form(request, frozenset({"token"}))
    except _FormRefused as refusal:
        return _refused(refusal)
    token = _valid_token(form.get("token"))
    if token is None:
        return _broken_link()
    funds: FundsServices = request.app.state.funds
    try:
        async with unit_of_work(funds.sessions) as session:
            row = await funds.withdrawals.disown(
                session, token=token, request=request_info(request)
            )
    except NotFound:
        return _broken_link()
    if row.status == WithdrawalStatus.REFUSED.value:
        return _render(
            _Page(
                "Withdrawal refused",
                ("The withdrawal is stopped and its cash is back in your account.",),
            )
        )
    return _render(
        _Page(
            "Too late to refuse it here",
            (
                f"This withdrawal is already {row.status}. Contact support at once.",
                "Change your password and review your devices.",
            ),
        ),
        409,
    )


# Answering "was this you?" (ATO-2) --------------------------------------------------------

_ANSWERS: Final = {
    PromptAnswer.NO.value: (
        "No, it was not me",
        "Press the button to sign out every session of your account, freeze withdrawals and "
        "send your account to our security team.",
    ),
    PromptAnswer.YES.value: (
        "Yes, it was me",
        "Press the button to confirm that the activity we emailed you about was yours.",
    ),
}


@router.get(PROMPT_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def takeover_prompt_page(token: str | None = None, answer: str | None = None) -> HTMLResponse:
    """The emailed "was this you?" link: a button for the answer it names (GET changes
    nothing: mail scanners open links by themselves)."""
    valid = _valid_token(token)
    if valid is None or answer not in _ANSWERS:
        return _broken_link()
    button, text = _ANSWERS[answer]
    form = (
        f'<form method="post" action="{PROMPT_PATH}">{_hidden_token(valid)}'
        f'<input type="hidden" name="answer" value="{html.escape(answer, quote=True)}">'
        f'<button type="submit">{html.escape(button)}</button></form>'
    )
    return _render(_Page("Was this you?", (text,), form))


@router.post(PROMPT_PATH, openapi_extra=public(), response_class=HTMLResponse)
async def takeover_prompt_submit(request: Request) -> HTMLResponse:
    try:
        form = await _read_form(request, frozenset({"token", "answer"}))
    except _FormRefused as refusal:
        return _refused(refusal)
    token = _valid_token(form.get("token"))
    answer = form.get("answer")
    if token is None or answer not in _ANSWERS:
        return _broken_link()
    fraud: FraudServices = request.app.state.fraud
    try:
        async with fraud.unit_of_work() as session:
            outcome = await fraud.defence.answer(
                session, token=token, answer=PromptAnswer(answer), request=request_info(request)
            )
    except TradeguardError:
        return _broken_link()
    if outcome.answer is PromptAnswer.YES:
        return _render(_Page("Thank you", ("Nothing changes on your account.",)))
    return _render(
        _Page(
            "Your account is secured",
            (
                "Every session was signed out and withdrawals are frozen. Our security team "
                "will contact you.",
                "Reset your password now from the sign-in page.",
            ),
        )
    )
