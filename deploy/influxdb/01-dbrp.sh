#!/bin/sh
# Runs once, after the InfluxDB 2.x setup (DOCKER_INFLUXDB_INIT_MODE=setup): maps the bucket to an
# InfluxQL database/retention policy so Grafana (InfluxQL) and tradeguard's queries (/query) can read it.
set -e
influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default
