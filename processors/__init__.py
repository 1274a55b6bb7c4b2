"""The faust app: suppression state, engagement aggregates and the gated SMTP sender."""
