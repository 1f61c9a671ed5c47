# syntax=docker/dockerfile:1
# One image for the three rlfleet services; the container's command picks the service:
#   python -m services.replay    (port 8000)
#   python -m services.learner   (port 8001)
#   python -m services.actor     (port 8002; ROLE=evaluator for an evaluator)
# Settings come from environment variables (README, "Run it in containers").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer, before the code: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A non-root user; /data (checkpoints, run logs) is its own, so named volumes mounted there
# start out owned by it.
RUN useradd --no-log-init --create-home --uid 10001 --user-group rlfleet \
    && mkdir -p /data/checkpoints /data/runs \
    && chown -R rlfleet:rlfleet /data

# The code (owned by root, read-only for the service user).
COPY shared ./shared
COPY services ./services

# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000 8001 8002

# /healthz of the service in this container: 200 when it and what it depends on answer.
# PORT is the service's port (set by docker-compose.yml and the Kubernetes manifests).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

CMD ["python", "-m", "services.replay"]
