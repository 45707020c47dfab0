# vpnd and the Xray it runs, FROM scratch: built from binaries compiled on
# the host, so nothing is pulled and no registry is needed. `make image`
# builds them and this image (tag vpnfleet/vpnd:local); the context is the
# repository root, of which .dockerignore sends only what is copied here.
#
# It runs as uid 65532 (no capabilities: Xray servers take ports from 1024
# up; see the README for 443), keeps its state in /var/lib/vpnd (a volume),
# and serves the API on 0.0.0.0:8080 and NATS (TLS) on 0.0.0.0:4222, so
# `docker run -p 8080:8080` reaches the API; the ops listener (/metrics,
# /readyz) stays on the container's loopback, where HEALTHCHECK asks it.
FROM scratch
COPY deploy/image/passwd deploy/image/group /etc/
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=65532:65532 deploy/image/empty/ /var/lib/vpnd/
COPY bin/xray /usr/local/bin/xray
COPY bin/vpnd /usr/local/bin/vpnd
USER 65532:65532
ENV VPN_DATA_DIR=/var/lib/vpnd \
    VPN_HTTP_ADDR=0.0.0.0:8080 \
    VPN_OPS_ADDR=127.0.0.1:9100 \
    VPN_NATS_LISTEN=0.0.0.0:4222
VOLUME /var/lib/vpnd
EXPOSE 8080 4222
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/vpnd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/vpnd"]
