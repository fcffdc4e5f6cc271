# One image for web, worker and beat: `chapar serve|worker|beat`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CHAPAR_TEMPLATES_DIR=/app/templates CHAPAR_DATA_DIR=/var/lib/chapar
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY worker ./worker
COPY templates ./templates
RUN pip install -e ".[ops]" && useradd --system --home /var/lib/chapar --create-home chapar
USER chapar
EXPOSE 8000
CMD ["chapar", "serve", "--host", "0.0.0.0", "--port", "8000"]
