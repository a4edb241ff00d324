# The pgha demo image: Debian 12 (bookworm) with PostgreSQL 15, etcd and HAProxy from
# Debian's own packages, and pgha in its own virtualenv in /opt/pgha. Every service of
# docker-compose.yml runs from this one image.
FROM debian:bookworm-slim

# Debian's postgresql package creates and starts a "main" cluster on install unless
# createcluster.conf says otherwise; pgha creates its own (traps 21).
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-15 etcd-server etcd-client haproxy python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /src/
COPY pgha /src/pgha
RUN python3 -m venv /opt/pgha \
    && /opt/pgha/bin/pip install --no-cache-dir /src \
    && rm -rf /src \
    && install -d -o postgres -g postgres -m 0700 /var/lib/pgha \
    && install -d -o postgres -g postgres -m 0755 /run/pgha /run/postgresql

COPY config/compose/pgha.yml /etc/pgha/pgha.yml
ENV PATH=/opt/pgha/bin:$PATH \
    PGHA_CONFIG=/etc/pgha/pgha.yml
USER postgres
WORKDIR /var/lib/pgha
EXPOSE 5432 8008
CMD ["pgha", "agent"]
