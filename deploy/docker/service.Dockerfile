# One image recipe for the four services: `--build-arg SERVICE=ingest|profile|scoring|alerting`.
# Built from the repository root (docker-compose.yml sets the context).
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
RUN uv sync --frozen --no-dev --all-packages

FROM python:3.11-slim-bookworm
ARG SERVICE
ENV PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH CXM_SERVICE_MODULE=cxm_${SERVICE} \
    CXM_HOST=0.0.0.0 CXM_DATA_DIR=/data
RUN useradd --system --uid 10001 --home-dir /app cxm && mkdir -p /data && chown cxm /data
WORKDIR /app
COPY --from=base /app /app
USER cxm
CMD ["sh", "-c", "exec python -m $CXM_SERVICE_MODULE"]
