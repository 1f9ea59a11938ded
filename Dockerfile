# The X-Ray daemon sidecar image: FROM scratch, the static `xray` binary and nothing else it
# does not need. Same shape as the original daemon's image, so task definitions written for
# it work unchanged: the binary at /xray (also /usr/bin/xray), the non-root user `xray`
# (uid 10001), CA certificates for TLS to AWS, /etc/amazon/xray/cfg.yaml, and an entrypoint that
# listens on all interfaces; a task definition's `command` (e.g. `-o -n eu-central-1`) adds
# flags after the entrypoint's. The licence and the third-party notices are in
# /usr/share/licenses/xray/.
#
# No registry is used: the build context is a directory that scripts/release.sh stages with a
# static binary built beforehand (target/dist/image-<arch>/: xray, cfg.yaml,
# ca-certificates.crt, passwd, group, LICENSE, THIRD-PARTY-LICENSES, usr/bin/xray -> /xray), one
# per architecture. Build everything (the amd64 image in Docker, and both architectures in one
# OCI archive) with
#   scripts/release.sh
# or, once staged, this image alone with
#   docker build -f Dockerfile -t xray-daemon-rs target/dist/image-amd64
FROM scratch
COPY passwd group /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY cfg.yaml /etc/amazon/xray/cfg.yaml
COPY LICENSE THIRD-PARTY-LICENSES /usr/share/licenses/xray/
COPY xray /xray
COPY usr/ /usr/
USER xray
# 4318: the OTLP/HTTP receiver, when a task adds --otlp-http 0.0.0.0:4318; 4317: the OTLP/gRPC
# receiver, when it adds --otlp-grpc 0.0.0.0:4317.
EXPOSE 2000/udp 2000/tcp 4317/tcp 4318/tcp
# `xray health` asks the daemon at 127.0.0.1:2000 (liveness only); see packaging/README.md.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/xray", "health"]
ENTRYPOINT ["/xray", "-t", "0.0.0.0:2000", "-b", "0.0.0.0:2000"]
