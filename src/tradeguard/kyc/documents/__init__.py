"""Identity documents (KYC-2): upload checks, encrypted storage, MRZ checks, verification."""
