"""The email templates; installed as the package `service.email_templates` (see pyproject.toml)."""
