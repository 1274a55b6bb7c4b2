"""HTTP edges (Starlette) that turn opens, clicks, unsubscribes and campaign intake into Kafka events."""
