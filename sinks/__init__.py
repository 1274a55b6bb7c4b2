"""Kafka -> ClickHouse: row mapping, the batching consumer, migrations, reports and the query API."""
