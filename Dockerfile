# Fatoura's production image: `docker build -t fatoura .`, then run the Procfile's process types
# (`fatoura serve`, `fatoura worker`, `fatoura db upgrade`); compose.yaml wires them together.
FROM python:3.11-slim

# The PDFs embed their own fonts (core/documents/fonts) and shape Arabic with uharfbuzz, which
# ships its own HarfBuzz: no system font or locale package is needed. tini forwards SIGTERM so a
# process drains its in-flight work when the container stops.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FATOURA_LOCALES_DIR=/app/locales

WORKDIR /app
# Dependencies first, from the lock file, so a code change does not reinstall them.
COPY requirements.lock ./
RUN python -m pip install -r requirements.lock
COPY pyproject.toml README.md babel.cfg ./
COPY core ./core
COPY bot ./bot
COPY webhooks ./webhooks
COPY fatoura ./fatoura
COPY locales ./locales
RUN python -m pip install --no-deps . \
 && fatoura i18n compile \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin fatoura \
 && chown -R fatoura /app/locales

USER fatoura
ENV PORT=8000
EXPOSE 8000
ENTRYPOINT ["tini", "--", "fatoura"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
