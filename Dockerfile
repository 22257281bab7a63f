# Build and run image for `vote`. The README's `make run` / `make test` do not need Docker;
# this is for deployments and for people who prefer containers.
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/bootstrap scripts/bootstrap
RUN scripts/bootstrap
COPY . .
RUN cmake --preset release && cmake --build --preset release

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpq5 libhiredis0.14 librabbitmq4 libprometheus-cpp-core1.0 libjwt0 libsodium23 libspdlog1.10 \
      libfmt9 libyaml-cpp0.7 libroaring0 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/build/release/vote /usr/local/bin/vote
COPY config config
COPY migrations migrations
# Production: the server refuses to start with the development JWT key or the default database
# and broker passwords; give them with -e VOTE_JWT_SECRET_KEY=... VOTE_POSTGRES_PASSWORD=...
# VOTE_RABBITMQ_PASSWORD=... (docker-compose.yml requires them).
ENV VOTE_SERVER_ENV=production
EXPOSE 8080
USER nobody
ENTRYPOINT ["vote"]
CMD ["serve", "--config", "config/config.yaml"]
