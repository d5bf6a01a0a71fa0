"""Storage interfaces, one ability each, and their SQLAlchemy implementation."""
