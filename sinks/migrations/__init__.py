"""Numbered ClickHouse migrations, applied in order by `mailpulse migrate`."""
