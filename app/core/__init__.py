"""Cross-cutting foundations: settings, database, security, migrations, readiness."""
