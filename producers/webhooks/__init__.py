"""Provider webhooks: signature verification and normalization into mailpulse events (pure)."""
