"""Test card numbers: the networks' and processors' published test PANs (no real card).

/work/shared/data holds no card data, so these are the well-known ones (Stripe, Adyen and
the networks' own test lists), one or more per supported brand.
"""

from __future__ import annotations

from tradeguard.vault.domain import CardBrand

TEST_PANS: dict[str, CardBrand] = {
    "4111111111111111": CardBrand.VISA,
    "4012888888881881": CardBrand.VISA,
    "4222222222222": CardBrand.VISA,  # 13 digits
    "5555555555554444": CardBrand.MASTERCARD,
    "5105105105105100": CardBrand.MASTERCARD,
    "2223003122003222": CardBrand.MASTERCARD,  # 2-series
    "2221000000000009": CardBrand.MASTERCARD,  # 2-series, lower bound
    "2720990000000007": CardBrand.MASTERCARD,  # 2-series, upper bound
    "378282246310005": CardBrand.AMEX,
    "371449635398431": CardBrand.AMEX,
    "6011111111111117": CardBrand.DISCOVER,
    "6011000990139424": CardBrand.DISCOVER,
    "6445644564456445": CardBrand.DISCOVER,
    "6500000000000002": CardBrand.DISCOVER,
    "3530111333300000": CardBrand.JCB,
    "3566002020360505": CardBrand.JCB,
    "30569309025904": CardBrand.DINERS,  # 14 digits
    "36227206271667": CardBrand.DINERS,
    "3056930009020004": CardBrand.DINERS,  # 16 digits
    "6200000000000005": CardBrand.UNIONPAY,
    "6205500000000000004": CardBrand.UNIONPAY,  # 19 digits
}

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
CVV = "737"
AMEX_CVV = "7373"
