# One image for every tradeguard process (node, worker, console, traffic, one-shot commands).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY common ./common
COPY accounts ./accounts
COPY tradeguard ./tradeguard
COPY domain ./domain
COPY guardians ./guardians
COPY collectors ./collectors
COPY dashboards ./dashboards
COPY console ./console
COPY alerts ./alerts
COPY bench ./bench
# the install compiles the guard's hot path with mypyc (setup.py): a C compiler for the build only
# (--build-arg TRADEGUARD_PURE_PYTHON=1 skips compiling; the extensions are optional anyway)
ARG TRADEGUARD_PURE_PYTHON=
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && TRADEGUARD_PURE_PYTHON="$TRADEGUARD_PURE_PYTHON" pip install . \
    && apt-get purge -y -qq gcc libc6-dev >/dev/null && apt-get autoremove -y -qq >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 tradeguard \
    && mkdir -p /app/var && chown tradeguard /app/var

USER tradeguard
# Embedded stores (when no server URL is set) and the collectors' outbox live here.
ENV TRADEGUARD_VAR_DIR=/app/var
VOLUME ["/app/var"]
EXPOSE 8000 8501
ENTRYPOINT []
CMD ["tradeguard", "--help"]
