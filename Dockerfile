# One image for web, worker and beat: `chapar serve|worker|beat`.
# Installed like any deployment installs it (not editable: templates, migrations and samples
# come from the package), and in production mode unless the deployment says otherwise.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CHAPAR_ENVIRONMENT=production CHAPAR_DATA_DIR=/var/lib/chapar
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY worker /src/worker
COPY templates /src/templates
RUN pip install "/src[ops]" && rm -rf /src \
    && useradd --system --home /var/lib/chapar --create-home chapar
USER chapar
WORKDIR /var/lib/chapar
EXPOSE 8000
CMD ["chapar", "serve", "--host", "0.0.0.0", "--port", "8000"]
