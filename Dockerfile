# The Trialforge service image: API, scheduler and workers (one image, different commands).
#
#   docker build -t trialforge/app:latest .
#
# Trial workers start sandbox containers through the host's Docker socket;
# see docker-compose.yml for what mounting that socket grants.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# git: the git store; tini: signal forwarding so workers stop their trials cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/trialforge
ENV PATH=/opt/trialforge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRIALFORGE_DATA_DIR=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir .

VOLUME /data
EXPOSE 8000
ENTRYPOINT ["tini", "--", "trialforge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
