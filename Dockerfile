# Multi-stage build of the connector image.
#   docker build -t timestream-prometheus-connector .
#   docker run -p 9201:9201 timestream-prometheus-connector \
#       --default-database=prometheusDatabase --default-table=prometheusMetricsTable
# Credentials come from each request's basic auth (default) or, with
# --enable-sigv4-auth=true, from the usual AWS environment variables or a mounted
# ~/.aws directory (-v $HOME/.aws:/home/connector/.aws:ro).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin timestream-prometheus-connector \
 && strip target/release/timestream-prometheus-connector

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 connector \
 && mkdir /data && chown connector /data
COPY --from=build /src/target/release/timestream-prometheus-connector /usr/local/bin/
USER connector
EXPOSE 9201
# The local store, if used (--local-store /data), keeps its data here.
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/timestream-prometheus-connector"]
