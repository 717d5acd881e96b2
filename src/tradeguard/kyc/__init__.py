"""Know your customer (issue #13, KYC-1, KYC-2): onboarding applications (`onboarding/`),
identity documents and their checks (`documents/`), and sanctions screening (`sanctions/`)."""
