# The Trialforge service image: API, scheduler and workers (one image, different commands).
#
#   docker build -t trialforge/app:latest .
#
# Without a registry: build on a local Debian base with python3-venv, git and
# tini, from a wheelhouse of the dependencies in ./wheels:
#   pip wheel . setuptools wheel async-timeout -w wheels
#   docker build --network host --build-arg BASE=<local base> \
#     --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheels -t trialforge/app .
#
# Trial workers start sandbox containers through the host's Docker socket;
# see docker-compose.yml for what mounting that socket grants.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS

# git: the git store; tini: signal forwarding so workers stop their trials cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/trialforge
ENV PATH=/opt/trialforge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRIALFORGE_DATA_DIR=/data

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . && rm -rf /src/wheels

VOLUME /data
EXPOSE 8000
ENTRYPOINT ["tini", "--", "trialforge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
