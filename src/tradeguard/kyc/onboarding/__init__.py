"""Onboarding (KYC-1): applications, their review, risk rating and the data inventory."""
