# livereplay daemon: the in-memory store by default, Redis with LIVEREPLAY_BACKEND=redis.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY client ./client
COPY server ./server
RUN pip install --no-cache-dir -c requirements.lock '.[server,redis]'

# Inside a container the daemon must listen beyond loopback.
ENV LIVEREPLAY_HOST=0.0.0.0 \
    LIVEREPLAY_PORT=7447 \
    LIVEREPLAY_LOG_FORMAT=json
EXPOSE 7447
USER 10001
ENTRYPOINT ["livereplay", "serve"]
