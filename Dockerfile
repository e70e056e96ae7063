# The livereplay daemon: `docker build -t livereplay .` from the repo root.
#
# Build stage: a venv with the hash-checked image lock (deploy/requirements.txt,
# made by scripts/lock.sh), then the project's two distributions (client/ and
# server/), built offline by the locked hatchling. Runtime stage: the slim base plus that venv, run as a non-root user.
# tests/deploy/test_dockerfile.py runs the build stage's RUN steps in a fresh
# venv and starts the daemon as ENTRYPOINT says: keep to ARG, FROM, ENV,
# WORKDIR, COPY, RUN, USER, EXPOSE, ENTRYPOINT and CMD so that test covers it.
ARG PYTHON_IMAGE=python:3.11-slim
ARG VENV=/opt/livereplay

FROM ${PYTHON_IMAGE} AS build
ARG VENV
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The venv gets no pip or setuptools of its own: only what the lock lists.
RUN python -m venv --without-pip "$VENV"
WORKDIR /src
COPY deploy/requirements.txt deploy/requirements.txt
RUN python -m pip --python "$VENV/bin/python" install --require-hashes \
        -r deploy/requirements.txt
COPY client client
COPY server server
RUN python -m pip --python "$VENV/bin/python" install --no-deps --no-build-isolation \
        --no-index ./client ./server

FROM ${PYTHON_IMAGE}
ARG VENV
COPY --from=build ${VENV} ${VENV}
# Inside a container the daemon listens beyond loopback, so it refuses to start
# without a writer token (LIVEREPLAY_WRITER_TOKEN_FILE; readers need
# LIVEREPLAY_READER_KEY_FILE: mount them as secrets).
ENV PATH=${VENV}/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LIVEREPLAY_HOST=0.0.0.0 \
    LIVEREPLAY_PORT=7447 \
    LIVEREPLAY_LOG_FORMAT=json
USER 10001:10001
EXPOSE 7447
ENTRYPOINT ["livereplay", "serve"]
