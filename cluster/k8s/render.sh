#!/bin/sh
# Write region-NAME.yaml for each region from region.yaml.in:
#   render NAME NODE_ID_BASE ROUTER_ID
# NODE_ID_BASE is the region's first node id in the topology (its pods are base + index);
# ROUTER_ID is the region's [[routers]] entry. Edit these lines when the topology changes.
set -eu
cd "$(dirname "$0")"

render() {
    sed -e "s/@REGION@/$1/g" -e "s/@NODE_ID_BASE@/$2/g" -e "s/@ROUTER_ID@/$3/g" \
        region.yaml.in > "region-$1.yaml"
}

render shenzhen 1 1
render shanghai 2 2
render tianjin 3 3
