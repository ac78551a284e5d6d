# One image per binary: docker build --build-arg BIN=godel-guard -t godel-guard .
#                        docker build --build-arg BIN=godel-operator -t godel-operator .
FROM rust:1.95-bookworm AS build
ARG BIN=godel-guard
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p ${BIN} && cp target/release/${BIN} /app

# Distroless, non-root (uid 65532), no shell: what the operator's security context expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /app /app
USER 65532:65532
ENTRYPOINT ["/app"]
