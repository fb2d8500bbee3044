# memcore container image: build with the Rust toolchain, run from a small
# Debian image as an unprivileged user.
#   docker build -t memcore .
#   docker run --rm -p 11211:11211 \
#       --security-opt seccomp=memcore-seccomp.json memcore -m 1024
# The seccomp profile: docs/operations.md#containers (Docker's default
# profile blocks io_uring, which memcore runs on).

FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin memcore \
    && install -m 755 target/release/memcore /usr/local/bin/memcore

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin memcore
COPY --from=build /usr/local/bin/memcore /usr/local/bin/memcore
COPY LICENSE /usr/share/doc/memcore/LICENSE
USER memcore
EXPOSE 11211
# memcached's flags; -l 0.0.0.0 so that the published port reaches it.
ENTRYPOINT ["/usr/local/bin/memcore", "-l", "0.0.0.0"]
CMD ["-p", "11211", "-m", "64"]
