# syntax=docker/dockerfile:1
# A small image of the local proxy: `docker build -t aws-localproxy .`
#
#   docker run --rm -e AWSIOT_TUNNEL_ACCESS_TOKEN aws-localproxy -r us-east-1 -d SSH1=host.docker.internal:22
#
# The entry point is the `localproxy` command, so arguments are its options. Pass the access
# token through the environment (-e NAME without a value copies it from your shell), never as
# an argument. See contrib/README.md.

# Build the project and its dependencies as wheels, in a throw-away stage.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels aws-localproxy \
    && useradd --system --uid 10001 --user-group --no-log-init \
        --home-dir /var/lib/aws-localproxy --create-home --shell /usr/sbin/nologin localproxy
USER localproxy:localproxy
WORKDIR /var/lib/aws-localproxy
ENTRYPOINT ["localproxy"]
CMD ["--help"]
