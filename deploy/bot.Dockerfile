# The bot image: the `cyto` command (Slack bot, CLI, engine) with the AWS executor. Jobs run in the
# job image (container/Dockerfile); this one only submits and follows them.
# Build from the repository root; deploy/bot.Dockerfile.dockerignore chooses the context:
#   docker build -f deploy/bot.Dockerfile -t cyto-bot .
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="cyto-bot" \
      org.opencontainers.image.description="cyto-bot: /cyto in Slack, AWS Batch engine, run database on /data" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CYTO_DB=/data/runs.sqlite

WORKDIR /app
COPY pyproject.toml README.md requirements-test.txt requirements-notebook.txt /app/
COPY bot/ /app/bot/
COPY handlers/ /app/handlers/
COPY container/ /app/container/
RUN pip install --no-cache-dir /app

RUN groupadd --system --gid 10001 cyto \
    && useradd --system --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin cyto \
    && mkdir -p /data && chown 10001:10001 /data

USER 10001:10001
ENTRYPOINT ["cyto"]
CMD ["serve"]
