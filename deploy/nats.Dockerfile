# nats-server, FROM scratch (`make nats-image`, tag vpnfleet/nats:local):
# built on the host from the nats-server/v2 module the project already
# pins (shared/go.mod) as a static binary, so nothing is pulled. The
# context is the repository root (.dockerignore sends bin/nats-server).
# deploy/cluster runs three of it with the configs `vpn-cluster init`
# writes, mounted at /etc/nats, and data in /data.
FROM scratch
COPY bin/nats-server /usr/local/bin/nats-server
USER 65532:65532
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
