"""Suspicious-activity report drafts (31 CFR 1023.320, the broker-dealer SAR rule) from a
surveillance case closed as "reported": the machine-readable draft, the document a person
reads, and the filing deadline. Pure: no I/O.

**Deadline.** A SAR is filed no later than 30 calendar days after the date of initial
detection of facts that may constitute a basis for filing; when no suspect is identified on
that date, filing may wait up to 30 more days to identify one, never beyond 60 calendar days
after the initial detection (31 CFR 1023.320(b)(3)). FinCEN's guidance puts "initial
detection" at the point the firm knows or has reason to suspect, not the moment a system
flags something; this module takes the date it is given (by default the case's first
alert, the conservative reading) and counts calendar days in UTC.

**What is in it.** Ids, symbols, quantities, prices and amounts (Decimal strings) from the
alerts' evidence; account numbers masked to their last two digits; no names, addresses or
tax ids (the filer completes the subject section from the customer record at filing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND, ns_to_iso

FORMAT = "tradeguard-sar-draft/1"
REGULATION = "31 CFR 1023.320"
DEADLINE_DAYS = 30
# No suspect identified at detection: up to 30 more days, 60 in all (1023.320(b)(3)).
DEADLINE_DAYS_NO_SUSPECT = 60
# A broker-dealer must report a suspicious transaction of at least this much (1023.320(a)(2));
# below it, filing is voluntary.
REPORTING_THRESHOLD = Decimal(5000)
CENT = Decimal("0.01")
NS_PER_DAY = 86_400 * NS_PER_SECOND
SUBJECT_DETAILS_PENDING = "[completed at filing from the customer record]"


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """One alert of the case as the draft needs it."""

    alert_id: str
    alert_type: str
    detector: str
    symbol: str
    owner: str
    accounts: Sequence[str]
    score: int
    window_start_ns: int
    window_end_ns: int
    first_trigger_seq: int
    occurrences: int
    order_ids: Sequence[str]
    execution_ids: Sequence[str]
    evidence: Mapping[str, Any]
    summary: str


@dataclass(frozen=True, slots=True)
class CaseFacts:
    case_id: str
    title: str
    assignee: str | None
    closed_by: str
    closed_ns: int
    conclusion: str
    detected_ns: int
    suspect_identified: bool


def mask_account_number(number: str | None) -> str:
    """TG12345678 -> TG******78: enough to tell accounts apart in a reviewed document."""
    if not number:
        return "unknown"
    keep = 2
    prefix = number[:2] if number[:2].isalpha() else ""
    hidden = max(len(number) - len(prefix) - keep, 0)
    return prefix + "*" * hidden + number[-keep:]


def due_date(detected_ns: int, *, suspect_identified: bool) -> date:
    """The last calendar day (UTC) a SAR may be filed on."""
    days = DEADLINE_DAYS if suspect_identified else DEADLINE_DAYS_NO_SUSPECT
    detected = datetime.fromtimestamp(detected_ns // NS_PER_SECOND, tz=UTC).date()
    return detected + timedelta(days=days)


def due_ns(detected_ns: int, *, suspect_identified: bool) -> int:
    """The end of the due date (the first nanosecond of the day after it), UTC."""
    last = due_date(detected_ns, suspect_identified=suspect_identified)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return int(end.timestamp()) * NS_PER_SECOND


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        found = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return found if found.is_finite() else None


# The (quantity, price) evidence pairs whose products make an alert's amount, by type; the
# spoofing models' (the other types) is the genuine execution. Quote stuffing trades nothing.
_AMOUNT_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "WASH_TRADE": (("bought", "average_buy_price"), ("sold", "average_sell_price")),
    "PUMP_AND_DUMP": (
        ("group_bought", "average_buy_price"),
        ("group_sold_near_peak", "average_sell_price"),
    ),
    "FRONT_RUNNING": (
        ("quantity_ahead", "average_price_ahead"),
        ("unwound_quantity", "average_unwind_price"),
    ),
    "RESTRICTED_LIST_AHEAD": (("net_quantity", "average_price"),),
    "MARKING_THE_CLOSE": (("taken_quantity", "price"),),
    "QUOTE_STUFFING": (),
}
_EXECUTION = (("executed_quantity", "execution_price"),)


def alert_trades(alert: AlertFacts) -> list[dict[str, Any]] | None:
    """The executions behind the alert, from its evidence (surveillance/trades.py): only
    those with a valid price and quantity; None when the evidence predates the details."""
    rows = alert.evidence.get("executions")
    if not isinstance(rows, list):
        return None
    pattern = alert.evidence.get("pattern_execution_ids")
    only = set(pattern) if isinstance(pattern, list) else None
    found = []
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("execution_id"), str):
            continue
        if only is not None and row["execution_id"] not in only:
            continue  # the owner's other trading, shown as context: not the pattern
        price, quantity = _decimal(row.get("price")), _decimal(row.get("quantity"))
        if price is None or quantity is None or price <= 0 or quantity <= 0:
            continue
        found.append({**row, "price": price, "quantity": quantity})
    return found


def alert_amount(alert: AlertFacts) -> Decimal:
    """The value traded in the pattern (USD, cents): its executions' prices times
    quantities, so only the trades behind the alert count, never the rest of the accounts'
    trading; from the model's figures for evidence without execution details."""
    trades = alert_trades(alert)
    if trades is not None:
        amount = sum((t["price"] * t["quantity"] for t in trades), Decimal(0))
        return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)
    ev = alert.evidence
    total = Decimal(0)
    for quantity, price in _AMOUNT_FIELDS.get(alert.alert_type, _EXECUTION):
        q, p = _decimal(ev.get(quantity)), _decimal(ev.get(price))
        if q is not None and p is not None:
            total += abs(q) * p
    return total.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _day(ns: int) -> str:
    return ns_to_iso(ns)[:10]


def _wash_figures(alert: AlertFacts) -> tuple[Any, Any, Any, Any]:
    """(bought, sold, average buy price, average sell price) of the wash's own trades (the
    crosses, not the owner's other trading in the window), or the model's figures."""
    trades = alert_trades(alert)
    ev = alert.evidence
    if not trades:
        return (
            ev.get("bought"),
            ev.get("sold"),
            ev.get("average_buy_price"),
            ev.get("average_sell_price"),
        )
    sums = {True: [Decimal(0), Decimal(0)], False: [Decimal(0), Decimal(0)]}
    for t in trades:
        side = sums[t.get("side") == "buy"]
        side[0] += t["quantity"]
        side[1] += t["quantity"] * t["price"]

    def average(q: Decimal, n: Decimal) -> str:
        return str((n / q).quantize(Decimal("0.0001"))) if q else "-"

    return (
        int(sums[True][0]),
        int(sums[False][0]),
        average(*sums[True]),
        average(*sums[False]),
    )


def _time(ns: int) -> str:
    return ns_to_iso(ns)[:19].replace("T", " ") + " UTC"


def _accounts_text(accounts: Sequence[str], masked: Mapping[str, str]) -> str:
    names = [masked.get(a, "unknown") for a in accounts]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def alert_narrative(alert: AlertFacts, masked: Mapping[str, str]) -> str:
    """One paragraph of what the evidence shows, in words."""
    ev = alert.evidence
    who = _accounts_text(alert.accounts, masked)
    when = f"between {_time(alert.window_start_ns)} and {_time(alert.window_end_ns)}"
    amount = alert_amount(alert)
    if alert.alert_type == "WASH_TRADE":
        bought, sold, buy_price, sell_price = _wash_figures(alert)
        text = (
            f"{when.capitalize()}, account(s) {who}, under one beneficial owner, bought "
            f"{bought} and sold {sold} shares of {alert.symbol} at average "
            f"prices of {buy_price} and {sell_price} USD "
            f"(USD {amount} in all), leaving a net position change of "
            f"{ev.get('net_fraction')} of the larger side. {ev.get('self_matched_quantity', 0)} "
            "shares were matched between the owner's own accounts. The activity was "
            f"{ev.get('artificial_volume_share')} of the recorded volume in {alert.symbol} in "
            "the window: trading without an apparent change of beneficial ownership or "
            "economic purpose."
        )
    elif alert.alert_type == "PUMP_AND_DUMP":
        text = (
            f"{when.capitalize()}, account(s) {who} bought {ev.get('group_bought')} shares of "
            f"{alert.symbol} at an average price of {ev.get('average_buy_price')} USD, "
            f"{ev.get('group_buy_share')} of all customer buying in the symbol before its peak. "
            f"The price rose from {ev.get('base_price')} to {ev.get('peak_price')} USD "
            f"({ev.get('rise_fraction')}) within {ev.get('minutes_base_to_peak')} minutes, and "
            f"the same accounts sold {ev.get('group_sold_near_peak')} shares near the peak at an "
            f"average of {ev.get('average_sell_price')} USD (USD {amount} in all): coordinated "
            "buying, a price rise and selling at the top, consistent with a pump and dump."
        )
    elif alert.alert_type == "FRONT_RUNNING":
        text = (
            f"{when.capitalize()}, the firm's staff or proprietary account {who} "
            f"{'bought' if ev.get('side_ahead') == 'buy' else 'sold'} "
            f"{ev.get('quantity_ahead')} shares of {alert.symbol} at an average of "
            f"{ev.get('average_price_ahead')} USD {ev.get('seconds_ahead')} seconds before a "
            f"client order on the same side executed {ev.get('client_quantity')} shares (USD "
            f"{ev.get('client_notional')}), and unwound {ev.get('unwound_quantity')} shares at "
            f"{ev.get('average_unwind_price')} USD {ev.get('seconds_to_unwind')} seconds after "
            f"it (USD {amount} in all): trading ahead of a customer order, consistent with "
            "front-running."
        )
    elif alert.alert_type == "MARKING_THE_CLOSE":
        text = (
            f"{when.capitalize()}, account(s) {who} "
            f"{'bought' if ev.get('side') == 'buy' else 'sold'} {ev.get('taken_quantity')} "
            f"shares of {alert.symbol} taking liquidity in the last minutes before the close "
            f"({ev.get('volume_share')} of the liquidity-taking volume then); the price moved "
            f"{ev.get('move_fraction')} from {ev.get('reference_price')} to {ev.get('price')} "
            f"USD {ev.get('minutes_before_close')} minutes before the close (USD {amount}): "
            "consistent with marking the close."
        )
    elif alert.alert_type == "QUOTE_STUFFING":
        text = (
            f"{when.capitalize()}, account(s) {who} placed {ev.get('orders_placed')} orders "
            f"and cancelled {ev.get('orders_cancelled')} in {alert.symbol} within "
            f"{ev.get('seconds')} seconds with {ev.get('fills')} fills (cancel ratio "
            f"{ev.get('cancel_ratio')}): messages apparently not intended to trade, "
            "consistent with quote stuffing."
        )
    elif alert.alert_type == "RESTRICTED_LIST_AHEAD":
        text = (
            f"{when.capitalize()}, the firm's staff or proprietary account {who} built a net "
            f"position of {ev.get('net_quantity')} shares of {alert.symbol} at an average of "
            f"{ev.get('average_price')} USD (USD {amount}) within "
            f"{ev.get('minutes_before_listing')} minutes before the firm put {alert.symbol} on "
            "its restricted list: trading that may have used non-public information."
        )
    else:
        kind = "layering" if alert.alert_type == "LAYERING" else "spoofing"
        genuine = ev.get("genuine_side", "?")
        far = "sell" if genuine == "buy" else "buy"
        prices = ", ".join(str(p) for p in ev.get("cancelled_prices", []))
        text = (
            f"{when.capitalize()}, account(s) {who} showed {ev.get('far_side_resting_quantity')} "
            f"shares of {alert.symbol} on the {far} side at {ev.get('cancelled_levels')} price "
            f"level(s) ({prices}) against {ev.get('near_side_quantity')} on the {genuine} side. "
            f"An order on the {genuine} side executed {ev.get('executed_quantity')} shares at "
            f"{ev.get('execution_price')} USD (USD {amount}); "
            f"{ev.get('cancelled_quantity')} shares on the {far} side were then cancelled "
            f"{ev.get('seconds_after_execution')} seconds after the execution, "
            f"{ev.get('seconds_to_cancel_min')}-{ev.get('seconds_to_cancel_max')} seconds after "
            f"they were placed (order-to-trade ratio {ev.get('order_to_trade_ratio')}, cancel "
            f"ratio {ev.get('cancel_ratio')}): orders apparently not intended to be executed, "
            f"consistent with {kind}."
        )
    if alert.occurrences > 1:
        text += f" The pattern recurred {alert.occurrences} times in all."
    return text


def _subjects(
    alerts: Sequence[AlertFacts], account_users: Mapping[str, str | None]
) -> dict[tuple[str, str | None], tuple[set[str], set[str]]]:
    """Each person separately: (user, or the account itself when its user is not known) ->
    (its accounts in the alerts, the beneficial owners the alerts judged it under). Linked
    users judged as one owner stay two subjects, each with their own accounts."""
    subjects: dict[tuple[str, str | None], tuple[set[str], set[str]]] = {}
    for alert in alerts:
        for account in alert.accounts:
            user = account_users.get(account)
            key = (user, user) if user else (f"account:{account}", None)
            accounts, owners = subjects.setdefault(key, (set(), set()))
            accounts.add(account)
            owners.add(alert.owner)
    return subjects


def _case_trades(alerts: Sequence[AlertFacts]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The executions behind the case's alerts, each once (two alerts may name the same
    execution): execution id -> (symbol, execution)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for alert in alerts:
        for trade in alert_trades(alert) or ():
            found.setdefault(trade["execution_id"], (alert.symbol, trade))
    return found


def build_draft(
    case: CaseFacts,
    alerts: Sequence[AlertFacts],
    account_numbers: Mapping[str, str | None],
    *,
    report_id: str,
    created_ns: int,
    account_users: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The machine-readable draft (JSON-ready: strings, integers, lists, objects).

    `account_users`: each account's user; the parties are the users (each separately,
    whatever group the alerts judged them in), an account without a known user its own.
    The amounts are of the trades behind the alerts only, each execution counted once."""
    masked = {a: mask_account_number(n) for a, n in account_numbers.items()}
    ordered = sorted(alerts, key=lambda a: (a.window_start_ns, a.alert_id))
    if account_users is None:
        # Without the account holders: the alerts' owners stand for them.
        account_users = {acc: a.owner for a in ordered for acc in a.accounts}
    subjects = _subjects(ordered, account_users)
    owners = {a.owner for a in ordered}
    trades = _case_trades(ordered)
    instruments: dict[str, Decimal] = {}
    for alert in ordered:
        instruments.setdefault(alert.symbol, Decimal(0))
        if alert_trades(alert) is None:
            instruments[alert.symbol] += alert_amount(alert)
    for symbol, trade in trades.values():
        instruments[symbol] += (trade["price"] * trade["quantity"]).quantize(
            CENT, rounding=ROUND_HALF_EVEN
        )
    total = sum(instruments.values(), Decimal(0))
    account_count = len({a for accounts, _ in subjects.values() for a in accounts})
    users = sum(1 for _, user in subjects if user is not None)
    start = min((a.window_start_ns for a in ordered), default=case.detected_ns)
    end = max((a.window_end_ns for a in ordered), default=case.detected_ns)
    due = due_date(case.detected_ns, suspect_identified=case.suspect_identified)
    paragraphs = [
        f"Surveillance case {case.case_id} ({case.title}) was reviewed and closed on "
        f"{_day(case.closed_ns)} with the decision to report. Between {_day(start)} and "
        f"{_day(end)}, {len(ordered)} surveillance alert(s) in "
        f"{', '.join(sorted(instruments))} named {account_count} account(s) of {users} "
        f"customer(s), judged as {len(owners)} beneficial owner(s); {len(trades)} "
        f"execution(s) behind the alerts involved USD {total}.",
        *(alert_narrative(a, masked) for a in ordered),
        f"Reviewer's conclusion: {case.conclusion}",
    ]
    return {
        "format": FORMAT,
        "report_id": report_id,
        "case_id": case.case_id,
        "status": "draft",
        "created_at": ns_to_iso(created_ns),
        "filing": {
            "regulation": REGULATION,
            "detected_at": ns_to_iso(case.detected_ns),
            "suspect_identified": case.suspect_identified,
            "deadline_days": DEADLINE_DAYS if case.suspect_identified else DEADLINE_DAYS_NO_SUSPECT,
            "due_date": due.isoformat(),
            "reporting_threshold": str(REPORTING_THRESHOLD),
            "threshold_met": total >= REPORTING_THRESHOLD,
        },
        "activity": {
            "from": ns_to_iso(start),
            "to": ns_to_iso(end),
            "alert_types": sorted({a.alert_type for a in ordered}),
            "detectors": sorted({a.detector for a in ordered}),
            "total_amount": str(total),
            "currency": "USD",
        },
        "parties": [
            {
                "role": "subject",
                # The customer (a user id), or None for an account whose holder is unknown.
                "user_ref": user,
                # The owner(s) the alerts judged this customer's trading under: another
                # user's id when compliance or the derivation linked them (the subjects that
                # share it are `linked_with`).
                "beneficial_owner_ref": sorted(judged)[0],
                "beneficial_owner_refs": sorted(judged),
                "linked_with": sorted(
                    other
                    for (_, other), (_, their) in subjects.items()
                    if other is not None and other != user and their & judged
                ),
                "name": SUBJECT_DETAILS_PENDING,
                "tax_id": SUBJECT_DETAILS_PENDING,
                "accounts": [
                    {"account_id": account, "account_number": masked.get(account, "unknown")}
                    for account in sorted(accounts)
                ],
            }
            for (_, user), (accounts, judged) in sorted(subjects.items())
        ],
        "trades": [
            {
                "execution_id": trade["execution_id"],
                "symbol": symbol,
                "account_number": masked.get(str(trade.get("account_id")), "unknown"),
                "side": trade.get("side"),
                "quantity": int(trade["quantity"]),
                "price": str(trade["price"]),
                "time": trade.get("time"),
                "counterparty": trade.get("counterparty"),
            }
            for symbol, trade in sorted(
                trades.values(), key=lambda t: (str(t[1].get("time")), t[1]["execution_id"])
            )
        ],
        "instruments": [
            {"symbol": symbol, "amount": str(amount)}
            for symbol, amount in sorted(instruments.items())
        ],
        "alerts": [
            {
                "alert_id": a.alert_id,
                "alert_type": a.alert_type,
                "detector": a.detector,
                "symbol": a.symbol,
                "score": a.score,
                "window_start": ns_to_iso(a.window_start_ns),
                "window_end": ns_to_iso(a.window_end_ns),
                "ledger_seq": a.first_trigger_seq,
                "occurrences": a.occurrences,
                "amount": str(alert_amount(a)),
                "trade_count": len(alert_trades(a) or ()),
                "order_ids": list(a.order_ids),
                "execution_ids": list(a.execution_ids),
                "summary": a.summary,
            }
            for a in ordered
        ],
        "review": {
            "assignee": case.assignee,
            "closed_by": case.closed_by,
            "closed_at": ns_to_iso(case.closed_ns),
        },
        "narrative": "\n\n".join(paragraphs),
    }


# Markdown punctuation backslash-escaped; HTML's <, > and & as entities, so the document
# stays inert when a viewer renders it to HTML (reasons and titles are typed by people).
_MARKDOWN_SPECIAL = str.maketrans(
    {c: "\\" + c for c in "\\`*_{}[]()#+-!|"} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
)


def _md(text: object) -> str:
    """Free text made inert in Markdown (and in HTML rendered from it)."""
    return str(text).translate(_MARKDOWN_SPECIAL)


def render_markdown(draft: Mapping[str, Any]) -> str:
    """The draft as a document a person reads."""
    filing = draft["filing"]
    activity = draft["activity"]
    lines = [
        f"# Suspicious activity report: draft {_md(draft['report_id'])}",
        "",
        f"Status: **{_md(draft['status'])}**. Case {_md(draft['case_id'])}. "
        f"Prepared {_md(draft['created_at'])}.",
        "",
        "## Filing",
        "",
        f"- Rule: {_md(filing['regulation'])}",
        f"- Initial detection: {_md(filing['detected_at'])}",
        f"- Suspect identified: {'yes' if filing['suspect_identified'] else 'no'}",
        f"- Due: **{_md(filing['due_date'])}** ({filing['deadline_days']} calendar days)",
        f"- Amount involved: USD {_md(activity['total_amount'])} "
        f"({'at or above' if filing['threshold_met'] else 'below'} the USD "
        f"{_md(filing['reporting_threshold'])} reporting threshold)",
    ]
    if filing.get("filed_at"):
        lines.append(
            f"- Filed: {_md(filing['filed_at'])}, reference {_md(filing.get('reference', ''))}"
        )
    lines += [
        "",
        "## Subjects",
        "",
        "| customer | judged as owner | linked with | name | tax id | accounts |",
        "|---|---|---|---|---|---|",
    ]
    for party in draft["parties"]:
        accounts = ", ".join(
            f"{_md(a['account_number'])} ({_md(a['account_id'])})" for a in party["accounts"]
        )
        linked = ", ".join(_md(u) for u in party.get("linked_with", ())) or "-"
        lines.append(
            f"| {_md(party.get('user_ref') or 'unknown')} | "
            f"{_md(party['beneficial_owner_ref'])} | {linked} | {_md(party['name'])} | "
            f"{_md(party['tax_id'])} | {accounts} |"
        )
    lines += ["", "## Instruments", "", "| symbol | amount (USD) |", "|---|---|"]
    lines += [f"| {_md(i['symbol'])} | {_md(i['amount'])} |" for i in draft["instruments"]]
    lines += [
        "",
        "## Activity",
        "",
        f"From {_md(activity['from'])} to {_md(activity['to'])}; alert types "
        f"{_md(', '.join(activity['alert_types']))} "
        f"(models {_md(', '.join(activity['detectors']))}).",
        "",
        "| alert | type | symbol | window | score | amount (USD) | ledger seq |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in draft["alerts"]:
        lines.append(
            f"| {_md(a['alert_id'])} | {_md(a['alert_type'])} | {_md(a['symbol'])} | "
            f"{_md(a['window_start'])} to {_md(a['window_end'])} | {a['score']} | "
            f"{_md(a['amount'])} | {a['ledger_seq']} |"
        )
    trades = draft.get("trades") or []
    if trades:
        lines += [
            "",
            "## Trades behind the alerts",
            "",
            "| time | execution | symbol | account | side | quantity | price | counterparty |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {_md(t['time'])} | {_md(t['execution_id'])} | {_md(t['symbol'])} | "
            f"{_md(t['account_number'])} | {_md(t['side'])} | {t['quantity']} | "
            f"{_md(t['price'])} | {_md(t['counterparty'])} |"
            for t in trades
        ]
    lines += ["", "## Narrative", ""]
    lines += [_md(p) + "\n" for p in draft["narrative"].split("\n\n")]
    review = draft["review"]
    lines += [
        "## Review",
        "",
        f"Assigned to {_md(review['assignee'] or '-')}; closed by {_md(review['closed_by'])} "
        f"on {_md(review['closed_at'])}.",
        "",
    ]
    return "\n".join(lines)
