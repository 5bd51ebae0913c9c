# One image for every tradeguard process (node, worker, console, traffic, one-shot commands).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tradeguard ./tradeguard
COPY domain ./domain
COPY guardians ./guardians
COPY collectors ./collectors
COPY dashboards ./dashboards
COPY console ./console
COPY alerts ./alerts
COPY bench ./bench
RUN pip install . \
    && useradd --create-home --uid 10001 tradeguard \
    && mkdir -p /app/var && chown tradeguard /app/var

USER tradeguard
# Embedded stores (when no server URL is set) and the collectors' outbox live here.
ENV TRADEGUARD_VAR_DIR=/app/var
VOLUME ["/app/var"]
EXPOSE 8000 8501
ENTRYPOINT []
CMD ["tradeguard", "--help"]
