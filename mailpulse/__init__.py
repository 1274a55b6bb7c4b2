"""The thin shell: CLI, local stack supervisor, local Kafka and SMTP sink; wires the parts together."""
