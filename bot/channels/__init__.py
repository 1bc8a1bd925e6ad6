"""One adapter per chat platform: platform update -> Event, Reply -> platform calls."""
