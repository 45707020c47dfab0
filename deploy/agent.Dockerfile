# vpn-agent and the Xray it runs, FROM scratch (`make agent-image`, tag
# vpnfleet/vpn-agent:local); the context is the repository root, of which
# .dockerignore sends only what is copied here.
#
# It runs as uid 65532 and keeps its node id, credential and outbox in
# /var/lib/vpn-agent (a volume). Run it with host networking, so the Xray
# servers it supervises (process runtime) listen on the host:
#   docker run -d --network host -v vpn-agent:/var/lib/vpn-agent \
#     -e VPN_JOIN_TOKEN=<token from `vpn nodes add`> vpnfleet/vpn-agent:local
# The ops listener (/metrics, /readyz) is on 127.0.0.1:9104, where
# HEALTHCHECK asks it.
FROM scratch
COPY deploy/image/passwd deploy/image/group /etc/
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=65532:65532 deploy/image/empty/ /var/lib/vpn-agent/
COPY bin/xray /usr/local/bin/xray
COPY bin/vpn-agent /usr/local/bin/vpn-agent
USER 65532:65532
ENV VPN_DATA_DIR=/var/lib/vpn-agent \
    VPN_OPS_ADDR=127.0.0.1:9104 \
    VPN_RUNTIME=process
VOLUME /var/lib/vpn-agent
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/vpn-agent", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/vpn-agent"]
