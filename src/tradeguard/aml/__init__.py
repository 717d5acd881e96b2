"""Anti-money laundering (issue #13, AML-1..3): monitoring rules, alerts, cases, CTR and SAR."""
