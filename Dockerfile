# syntax=docker/dockerfile:1
# Multi-stage: a pinned Rust builder, then the release binary alone on
# distroless (glibc, no shell), as a non-root user.

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# Queries are checked against the committed .sqlx data: no database needed.
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY src src
COPY migrations migrations
COPY crds crds
# Cargo.toml names these (workspace members loadtest and generate, [[bench]]
# plan): cargo cannot load the workspace without them, even to build one binary.
COPY loadtest loadtest
COPY generate generate
COPY benches benches
# configmirror_build_info's commit label: the context has no .git, so
# build.rs reads this (`--build-arg CONFIGMIRROR_COMMIT=$(git rev-parse --short=12 HEAD)`)
# and says "unknown" without it.
ARG CONFIGMIRROR_COMMIT=""
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin configmirror \
 && cp target/release/configmirror /configmirror

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /configmirror /usr/local/bin/configmirror
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/configmirror"]
CMD ["run"]
