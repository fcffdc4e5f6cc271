"""The web app: reader pages, the JSON API, health endpoints."""
