# Xray-core built from the pinned Go module (`make xray`), as a FROM scratch
# image (`make xray-image`): no base image, no registry. The build context is
# bin/.
FROM scratch
COPY xray /usr/local/bin/xray
ENTRYPOINT ["/usr/local/bin/xray"]
CMD ["run", "-c", "/etc/xray/config.json"]
