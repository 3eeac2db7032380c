# Verdict container image. Not built by CI (no Docker engine there); kept conventional:
#   docker build -t verdict:0.1.0 --build-arg VERDICT_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
#
# Stage 1: build with the pinned Rust toolchain, exactly the locked dependencies.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs README.md ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
ARG VERDICT_GIT_COMMIT=unknown
ENV VERDICT_GIT_COMMIT=${VERDICT_GIT_COMMIT}
RUN cargo build --release --locked --bin verdict

# Stage 2: a minimal base with glibc and no shell, running as a non-root user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/verdict /usr/local/bin/verdict
# The example bundle is the default; mount your own bundle over it (or set VERDICT_POLICIES).
COPY policies /etc/verdict/policies
ENV VERDICT_POLICIES=/etc/verdict/policies \
    VERDICT_GRPC_ADDR=0.0.0.0:50051 \
    VERDICT_METRICS_ADDR=0.0.0.0:9180 \
    VERDICT_HTTP_ADDR=0.0.0.0:8080 \
    VERDICT_LOG_FORMAT=json
USER 65532:65532
# gRPC (decisions, health, reflection), HTTP (/metrics, /healthz, /readyz) and the HTTP API
# (AuthZEN and verdict.v1 over HTTP/JSON, docs/authzen.md).
EXPOSE 50051 9180 8080
# No HEALTHCHECK: probes are the orchestrator's job (the Helm chart sets them).
ENTRYPOINT ["/usr/local/bin/verdict"]
CMD ["serve"]
